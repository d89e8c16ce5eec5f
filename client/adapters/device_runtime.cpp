// Executes engine actions in order against the installer, the journal and the transport.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "fota/client/runtime.hpp"

namespace fota::client {

namespace {

// Runs the application's health check on a thread of its own and waits for it no longer than
// the engine's deadline: a hook that hangs must not hang the client. No answer in time counts as
// unhealthy (the engine reverts); the hook's thread is left to finish on its own.
std::pair<bool, std::string> run_health_check(const HealthCheck& hook, HealthCheckSubject subject,
                                              std::int64_t budget_ms) {
  if (!hook) return {true, ""};
  struct Answer {
    std::mutex mutex;
    std::condition_variable ready;
    bool done = false;
    bool healthy = false;
    std::string detail;
  };
  auto answer = std::make_shared<Answer>();
  std::thread([answer, hook, subject = std::move(subject)] {
    std::string detail;
    bool healthy = false;
    try {
      healthy = hook(subject, detail);
    } catch (const std::exception& e) {
      detail = std::string("the health check threw: ") + e.what();
    }
    std::lock_guard lock(answer->mutex);
    answer->done = true;
    answer->healthy = healthy;
    answer->detail = std::move(detail);
    answer->ready.notify_all();
  }).detach();
  std::unique_lock lock(answer->mutex);
  const auto budget = std::chrono::milliseconds(std::max<std::int64_t>(budget_ms, 0));
  if (!answer->ready.wait_for(lock, budget, [&] { return answer->done; }))
    return {false, "the health check gave no answer within " + std::to_string(budget.count()) + " ms"};
  return {answer->healthy, answer->detail};
}

}  // namespace

DeviceRuntime::DeviceRuntime(UpdateEngine& engine, Installer& installer, Journal& journal,
                             Transport& transport, Hooks hooks)
    : engine_(engine),
      installer_(installer),
      journal_(journal),
      transport_(transport),
      hooks_(std::move(hooks)) {}

common::Status DeviceRuntime::run_side_effect(const Action& a) {
  if (const auto* p = std::get_if<action::PersistJournal>(&a)) {
    // Slot data first: the journal must never claim chunks that are not durable.
    if (auto s = installer_.sync(); !s.ok()) return s;
    return journal_.store(p->record);
  }
  if (const auto* m = std::get_if<action::StoreManifest>(&a))
    return journal_.store_manifest(m->signed_manifest);
  if (const auto* p = std::get_if<action::PrepareSlot>(&a)) return installer_.prepare(*p);
  if (const auto* w = std::get_if<action::WriteChunk>(&a))
    return installer_.write(w->slot, w->offset, w->data);
  if (const auto* s = std::get_if<action::ActivateSlot>(&a)) return installer_.activate(s->slot);
  if (const auto* c = std::get_if<action::CommitSlot>(&a)) return installer_.commit(c->slot);
  if (const auto* r = std::get_if<action::RevertSlot>(&a)) return installer_.revert(r->boot_slot);
  return common::ok_status();
}

bool DeviceRuntime::execute(Actions actions, std::int64_t now_ms) {
  std::deque<Action> queue(std::make_move_iterator(actions.begin()), std::make_move_iterator(actions.end()));
  auto feed = [&](Actions more, bool replace) {
    if (replace) queue.clear();
    for (auto it = more.rbegin(); it != more.rend(); ++it) queue.push_front(std::move(*it));
  };
  while (!queue.empty() && !stopped_) {
    Action a = std::move(queue.front());
    queue.pop_front();
    if (std::holds_alternative<action::Reboot>(a)) {
      reboot_requested_ = true;
      stopped_ = true;
      if (hooks_.after_action) hooks_.after_action(a);
      if (hooks_.reboot) hooks_.reboot();
      return false;
    }
    if (is_side_effect(a)) {
      if (auto s = run_side_effect(a); !s.ok()) {
        if (hooks_.log) {
          hooks_.log(v1::LOG_LEVEL_ERROR, std::string(action_name(a)) + " failed: " + s.error().to_string());
        }
        // The rest of the batch depended on this step: drop it and let the engine decide.
        feed(engine_.on_action_failed(a, s.error(), now_ms), /*replace=*/true);
        continue;
      }
    } else if (auto* p = std::get_if<action::PublishProgress>(&a)) {
      (void)transport_.publish(common::Channel::kProgress, p->progress.SerializeAsString());
    } else if (auto* i = std::get_if<action::PublishInventory>(&a)) {
      (void)transport_.publish(common::Channel::kInventory, i->inventory.SerializeAsString());
    } else if (auto* r = std::get_if<action::RequestChunks>(&a)) {
      (void)transport_.publish(common::Channel::kChunkRequest, r->request.SerializeAsString());
    } else if (auto* h = std::get_if<action::HashSlot>(&a)) {
      feed(engine_.on_slot_hash(installer_.hash(h->slot, h->size), now_ms), /*replace=*/false);
    } else if (auto* check = std::get_if<action::RunHealthCheck>(&a)) {
      const auto& update = engine_.record().update();
      const auto [healthy, detail] = run_health_check(
          hooks_.health_check, {update.target_slot(), update.version(), update.artifact_id()},
          check->deadline_ms - now_ms);
      feed(engine_.on_health_result(healthy, detail, now_ms), /*replace=*/false);
    } else if (auto* l = std::get_if<action::SetLogLevel>(&a)) {
      if (hooks_.set_log_level) hooks_.set_log_level(l->level);
    } else if (auto* g = std::get_if<action::Log>(&a)) {
      if (hooks_.log) hooks_.log(g->level, g->message);
    }
    if (hooks_.after_action && !hooks_.after_action(a)) {
      stopped_ = true;
      return false;
    }
  }
  return !stopped_;
}

}  // namespace fota::client
