// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/postgres_store.hpp"
#include "fota/orchestrator/store.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;

Result<std::unique_ptr<Store>> open_store(const std::string& url) {
  if (url.rfind("sqlite:", 0) == 0) {
    const std::string path = url.substr(7);
    if (path.empty())
      return Error(Errc::kInvalidArgument, "store 'sqlite:' names no file; write sqlite:/path/to/state.db");
    auto store = SqliteStore::open(path);
    if (!store) return store.error();
    return std::unique_ptr<Store>(std::move(store).value());
  }
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    auto store = PostgresStore::open(url);
    if (!store) return store.error();
    return std::unique_ptr<Store>(std::move(store).value());
  }
  const auto colon = url.find(':');
  return Error(Errc::kInvalidArgument,
               "store '" + (colon == std::string::npos ? url : url.substr(0, colon + 1) + "...") +
                   "': unknown kind of store; write sqlite:/path/to/state.db (the embedded default) or "
                   "postgresql://user@host:port/database");
}

}  // namespace fota::orchestrator
