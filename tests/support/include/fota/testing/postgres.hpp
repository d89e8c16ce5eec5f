// SPDX-License-Identifier: Apache-2.0
// Test harness: a throwaway PostgreSQL cluster, started the way MosquittoBroker starts mosquitto —
// the server binaries of the Debian package `postgresql` in a temp dir, listening on a free
// loopback port (TCP on 127.0.0.1 only, its unix socket in the temp dir), as an unprivileged user
// when the tests run as root, stopped and removed at the end. Tests get a fresh database each.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "fota/testing/broker.hpp"

namespace fota::testing {

struct PostgresOptions {
  // fsync on (every commit reaches the disk, as in production): for benchmarks. Off for tests,
  // which only need a commit to survive the death of the client process.
  bool durable = false;
};

class PostgresCluster {
 public:
  // The cluster of this test process: started on first use (one per test binary run), stopped when
  // the process exits. Throws std::runtime_error (naming the package to install when the server
  // binaries are missing, with the server's log when it does not start).
  static PostgresCluster& shared();

  explicit PostgresCluster(PostgresOptions options = {});
  ~PostgresCluster();
  PostgresCluster(const PostgresCluster&) = delete;
  PostgresCluster& operator=(const PostgresCluster&) = delete;

  int port() const noexcept { return port_; }
  // postgresql://fota@127.0.0.1:<port>/<database>
  std::string url(const std::string& database) const;
  // Creates an empty database with a name of its own and returns its URL.
  std::string create_database();
  // Runs `sql` (statements without parameters) on `database`; throws with the server's message.
  void exec(const std::string& database, const std::string& sql) const;
  std::string log() const;

 private:
  void start();
  void stop();

  PostgresOptions options_;
  std::unique_ptr<TempDir> dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  int databases_ = 0;
};

}  // namespace fota::testing
