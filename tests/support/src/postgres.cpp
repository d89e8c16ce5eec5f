// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/postgres.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "fota/common/process.hpp"

namespace fota::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSuperuser = "fota";
constexpr const char* kPackage = "postgresql";

// Who runs the server: PostgreSQL refuses to run as root, so a root test process hands the cluster
// to `nobody` (its directory chowned to it).
std::optional<common::ProcessCredentials> server_credentials() {
  if (::geteuid() != 0) return std::nullopt;
  passwd* pw = ::getpwnam("nobody");
  if (pw == nullptr)
    throw std::runtime_error("running as root and there is no user 'nobody' to run PostgreSQL as");
  return common::ProcessCredentials{pw->pw_uid, pw->pw_gid};
}

void chown_tree(const fs::path& root, const std::optional<common::ProcessCredentials>& owner) {
  if (!owner) return;
  if (::lchown(root.c_str(), owner->uid, owner->gid) != 0)
    throw std::runtime_error("chown " + root.string() + ": " + std::strerror(errno));
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (::lchown(entry.path().c_str(), owner->uid, owner->gid) != 0)
      throw std::runtime_error("chown " + entry.path().string() + ": " + std::strerror(errno));
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path server_binary(const char* name) {
  const fs::path path = fs::path(FOTA_POSTGRES_BIN_DIR) / name;
  if (::access(path.c_str(), X_OK) != 0) {
    throw std::runtime_error(path.string() + " is missing: install the Debian package '" + kPackage +
                             "' (scripts/deps.txt; scripts/install-deps.sh installs it)");
  }
  return path;
}

// Runs a server program to its end as the server's user; throws with its output on failure.
void run_as_server_user(const std::vector<std::string>& argv, const fs::path& output) {
  const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + output.string());
  common::SpawnOptions options;
  options.stdout_fd = fd;
  options.stderr_fd = fd;
  options.credentials = server_credentials();
  options.parent_death_signal = SIGKILL;
  auto pid = common::spawn(argv, options);
  ::close(fd);
  if (!pid) throw std::runtime_error(pid.error().message);
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(argv.front() + " failed:\n" + read_text(output));
}

// initdb takes seconds; its result is the same every time. It runs once per machine and server
// version into a cache directory that each cluster copies (tens of milliseconds).
fs::path cluster_template() {
  const fs::path initdb = server_binary("initdb");
  const fs::path cache =
      fs::temp_directory_path() / ("fota-postgres-template-v2-" + std::to_string(::geteuid()) + "-" +
                                   fs::path(FOTA_POSTGRES_BIN_DIR).parent_path().filename().string());
  const fs::path data = cache / "data";
  if (fs::exists(data / "PG_VERSION")) return data;
  fs::create_directories(cache);
  // Another test process may be creating it at the same time: one does, the others wait.
  const int lock = ::open((cache / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + cache.string());
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  if (fs::exists(data / "PG_VERSION")) return data;
  const fs::path staging = cache / ("staging-" + std::to_string(::getpid()));
  fs::remove_all(staging);
  fs::create_directories(staging);
  const auto owner = server_credentials();
  chown_tree(staging, owner);
  run_as_server_user({initdb.string(), "-D", (staging / "data").string(), "-U", kSuperuser, "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions", "--wal-segsize=1"},
                     staging / "initdb.log");
  fs::rename(staging / "data", data);
  fs::remove_all(staging);
  return data;
}

}  // namespace

PostgresCluster& PostgresCluster::shared() {
  static PostgresCluster cluster;
  return cluster;
}

PostgresCluster::PostgresCluster(PostgresOptions options) : options_(options) {
  const fs::path postgres = server_binary("postgres");
  const fs::path templ = cluster_template();
  dir_ = std::make_unique<TempDir>();
  fs::copy(templ, dir_->path() / "data", fs::copy_options::recursive);
  fs::permissions(dir_->path() / "data", fs::perms::owner_all, fs::perm_options::replace);
  chown_tree(dir_->path(), server_credentials());
  port_ = free_loopback_port();
  start();
}

PostgresCluster::~PostgresCluster() { stop(); }

void PostgresCluster::start() {
  const fs::path log_path = dir_->path() / "postgres.log";
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + log_path.string());
  std::vector<std::string> argv = {server_binary("postgres").string(),
                                   "-D",
                                   (dir_->path() / "data").string(),
                                   "-p",
                                   std::to_string(port_),
                                   "-k",
                                   dir_->path().string(),
                                   "-c",
                                   "listen_addresses=127.0.0.1",
                                   "-c",
                                   "max_connections=40",
                                   "-c",
                                   "shared_buffers=32MB"};
  if (!options_.durable) {
    for (const char* setting : {"fsync=off", "full_page_writes=off"}) {
      argv.push_back("-c");
      argv.push_back(setting);
    }
  }
  common::SpawnOptions spawn_options;
  spawn_options.stdout_fd = fd;
  spawn_options.stderr_fd = fd;
  spawn_options.credentials = server_credentials();
  // The server is this process's child like the tests' mosquitto: when the test process dies
  // without its destructors (a crash, a timeout's SIGKILL) the server stops too (SIGQUIT:
  // immediate shutdown) instead of outliving it.
  spawn_options.parent_death_signal = SIGQUIT;
  auto pid = common::spawn(argv, spawn_options);
  ::close(fd);
  if (!pid) throw std::runtime_error("cannot start PostgreSQL: " + pid.error().message);
  pid_ = *pid;
  const std::string ping = url("postgres") + "?connect_timeout=2";
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("PostgreSQL exited at start-up; its log:\n" + log());
    }
    if (PQping(ping.c_str()) == PQPING_OK) return;
    std::this_thread::sleep_for(20ms);
  }
  stop();
  throw std::runtime_error("PostgreSQL did not accept connections within 30 s; its log:\n" + log());
}

void PostgresCluster::stop() {
  if (pid_ <= 0) return;
  // A test cluster is thrown away: immediate shutdown (no checkpoint). A durable one (a
  // benchmark's) shuts down as in production: fast, with a checkpoint.
  ::kill(pid_, options_.durable ? SIGINT : SIGQUIT);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string PostgresCluster::url(const std::string& database) const {
  return std::string("postgresql://") + kSuperuser + "@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

std::string PostgresCluster::create_database() {
  const std::string name = "test_" + std::to_string(++databases_);
  // FILE_COPY: copying the small template's files beats logging each of its blocks (the default).
  exec("postgres", "CREATE DATABASE " + name + " STRATEGY = FILE_COPY");
  return url(name);
}

void PostgresCluster::exec(const std::string& database, const std::string& sql) const {
  PGconn* conn = PQconnectdb(url(database).c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    const auto status = PQresultStatus(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) error = PQerrorMessage(conn);
    PQclear(r);
  }
  PQfinish(conn);
  if (!error.empty()) throw std::runtime_error("PostgreSQL " + database + ": " + sql + ": " + error);
}

std::string PostgresCluster::log() const { return read_text(dir_->path() / "postgres.log"); }

}  // namespace fota::testing
