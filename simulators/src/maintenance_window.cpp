// Maintenance windows on each device's clock, for fota-sim's expectations (the orchestrator
// enforces them; the simulator checks it did). Time zones through Howard Hinnant's date/tz.
#include <date/tz.h>

#include "fota/sim/scenario.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

namespace {

constexpr int kMinutesPerDay = 24 * 60;

// Minute of the local day in `zone` at unix_ms.
int local_minute(const date::time_zone* zone, std::int64_t unix_ms) {
  const auto local =
      zone->to_local(date::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(unix_ms)));
  const auto since_midnight = local - date::floor<date::days>(local);
  return static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(since_midnight).count());
}

const date::time_zone* zone_or_utc(const std::string& name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return date::locate_zone("UTC");
  }
}

}  // namespace

common::Result<MaintenanceWindow> resolve_window(const MaintenanceWindow& window, std::int64_t unix_ms) {
  if (window.open_now_in.empty()) return window;
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(window.open_now_in);
  } catch (const std::exception&) {
    return Error(
        Errc::kInvalidArgument,
        "'" + window.open_now_in + "' is not an IANA time zone; write e.g. Asia/Tokyo or Europe/Berlin");
  }
  MaintenanceWindow fixed;
  fixed.start_minute = (local_minute(zone, unix_ms) + kMinutesPerDay - 1) % kMinutesPerDay;
  fixed.end_minute = (fixed.start_minute + window.length_minutes) % kMinutesPerDay;
  return fixed;
}

bool window_open(const MaintenanceWindow& window, const std::string& time_zone, std::int64_t unix_ms) {
  const int minute = local_minute(zone_or_utc(time_zone), unix_ms);
  if (window.start_minute < window.end_minute)
    return minute >= window.start_minute && minute < window.end_minute;
  return minute >= window.start_minute || minute < window.end_minute;  // across midnight
}

}  // namespace fota::sim
