// SPDX-License-Identifier: Apache-2.0
// Executes engine actions in order against the installer, the journal and the transport.
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "fota/client/runtime.hpp"

namespace fota::client {

struct ThreadedHealthCheck::Mailbox {
  std::mutex mutex;
  std::vector<Answer> answers;
  std::function<void()> notify;  // cleared when the owner goes
};

ThreadedHealthCheck::ThreadedHealthCheck(HealthCheck check, std::function<void()> notify)
    : check_(std::move(check)), mailbox_(std::make_shared<Mailbox>()) {
  mailbox_->notify = std::move(notify);
}

ThreadedHealthCheck::~ThreadedHealthCheck() {
  std::lock_guard lock(mailbox_->mutex);
  mailbox_->notify = nullptr;
}

void ThreadedHealthCheck::start(HealthCheckTicket ticket, HealthCheckSubject subject) {
  // The thread holds the mailbox, never this object: a check that hangs may outlive its owner.
  std::thread([mailbox = mailbox_, check = check_, ticket, subject = std::move(subject)] {
    Answer answer;
    answer.ticket = ticket;
    try {
      answer.healthy = check ? check(subject, answer.detail) : true;
    } catch (const std::exception& e) {
      answer.healthy = false;
      answer.detail = std::string("the health check threw: ") + e.what();
    }
    std::lock_guard lock(mailbox->mutex);
    mailbox->answers.push_back(std::move(answer));
    if (mailbox->notify) mailbox->notify();
  }).detach();
}

std::vector<ThreadedHealthCheck::Answer> ThreadedHealthCheck::take() {
  std::lock_guard lock(mailbox_->mutex);
  return std::exchange(mailbox_->answers, {});
}

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
    if (hooks_.before_action && !hooks_.before_action(a, queue)) {
      stopped_ = true;
      return false;
    }
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
    } else if (auto* rd = std::get_if<action::ReadActiveChunk>(&a)) {
      feed(engine_.on_active_chunk(rd->index, installer_.read(rd->slot, rd->offset, rd->size), now_ms),
           /*replace=*/false);
    } else if (auto* check = std::get_if<action::RunHealthCheck>(&a)) {
      if (!hooks_.start_health_check) {
        feed(engine_.on_health_result(true, "", now_ms), /*replace=*/false);
      } else {
        // The answer comes back through on_health_result(); the engine keeps the deadline.
        const auto& update = engine_.record().update();
        pending_check_ = ++last_ticket_;
        pending_deadline_ms_ = check->deadline_ms;
        hooks_.start_health_check(pending_check_,
                                  {update.target_slot(), update.version(), update.artifact_id()},
                                  check->deadline_ms);
      }
    } else if (auto* l = std::get_if<action::SetLogLevel>(&a)) {
      if (hooks_.set_log_level) hooks_.set_log_level(l->level);
    } else if (auto* g = std::get_if<action::Log>(&a)) {
      if (hooks_.log) hooks_.log(g->level, g->message);
    } else if (auto* c = std::get_if<action::InstallCertificate>(&a)) {
      if (hooks_.certificate_issued) hooks_.certificate_issued(*c);
    } else if (auto* renew = std::get_if<action::RenewCertificate>(&a)) {
      if (hooks_.renew_certificate) hooks_.renew_certificate(*renew);
    }
    if (hooks_.after_action && !hooks_.after_action(a)) {
      stopped_ = true;
      return false;
    }
  }
  return !stopped_;
}

bool DeviceRuntime::on_health_result(HealthCheckTicket ticket, bool healthy, const std::string& detail,
                                     std::int64_t now_ms) {
  if (stopped_) return false;
  if (ticket == 0 || ticket != pending_check_) return true;
  pending_check_ = 0;
  // Past the deadline the answer no longer counts: no answer in time is unhealthy, and the engine
  // says so at its next tick (or already did and moved on).
  if (now_ms >= pending_deadline_ms_ || engine_.state() != EngineState::kConfirming) return true;
  return execute(engine_.on_health_result(healthy, detail, now_ms), now_ms);
}

}  // namespace fota::client
