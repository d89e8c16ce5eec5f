// SPDX-License-Identifier: Apache-2.0
#include "fota/client/mosquitto/mosquitto_session.hpp"

#include <linux/tcp.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

namespace fota::client::mosquitto {

using common::Errc;
using common::Error;

namespace {

std::string openssl_error(const char* what) {
  std::string message = what;
  if (const unsigned long code = ERR_get_error(); code != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    message += ": ";
    message += buffer;
  }
  ERR_clear_error();
  return message;
}

Error mosquitto_error(const char* what, int rc) {
  return Error(Errc::kInternal, std::string(what) + ": " + mosquitto_strerror(rc));
}

// libmosquitto opens a socket pair per client only to wake its own blocking loop, which an
// external poll loop never uses; it treats failing to open it as a mere warning. At 10,000 clients
// those pairs would triple the descriptors a run needs (and hit a 20,000 limit at ~6,500 devices),
// so the pair is made to fail: for the duration of mosquitto_new() the soft descriptor limit is set
// to the lowest free descriptor, so no new descriptor can be opened. Single-threaded by design
// (every session is created on the loop's thread).
struct mosquitto* new_client_without_wakeup_pair(const std::string& client_id, void* userdata) {
  rlimit saved{};
  const bool limited = ::getrlimit(RLIMIT_NOFILE, &saved) == 0;
  bool lowered = false;
  if (limited) {
    const int lowest_free = ::dup(0);
    if (lowest_free >= 0) {
      ::close(lowest_free);
      rlimit tight = saved;
      tight.rlim_cur = static_cast<rlim_t>(lowest_free);
      lowered = ::setrlimit(RLIMIT_NOFILE, &tight) == 0;
    }
  }
  struct mosquitto* mosq = mosquitto_new(client_id.c_str(), true, userdata);
  if (lowered) ::setrlimit(RLIMIT_NOFILE, &saved);
  return mosq;
}

}  // namespace

MosquittoLibrary::MosquittoLibrary() { mosquitto_lib_init(); }
MosquittoLibrary::~MosquittoLibrary() { mosquitto_lib_cleanup(); }

common::Result<std::shared_ptr<TlsContext>> TlsContext::create(std::string_view ca_pem,
                                                               std::string_view cert_pem,
                                                               std::string_view key_pem,
                                                               std::string_view broker_host) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return Error(Errc::kCrypto, openssl_error("cannot create a TLS context"));
  std::shared_ptr<TlsContext> holder(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Fewer idle buffers: with thousands of connections this is most of a session's memory.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

  BIO* ca_bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  while (X509* ca = PEM_read_bio_X509(ca_bio, nullptr, nullptr, nullptr)) {
    loaded += X509_STORE_add_cert(store, ca) == 1;
    X509_free(ca);
  }
  BIO_free(ca_bio);
  ERR_clear_error();  // the loop ends on an expected "no start line"
  if (loaded == 0) return Error(Errc::kCrypto, "the CA PEM holds no certificate");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  const std::string host(broker_host);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    ERR_clear_error();
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }

  BIO* cert_bio = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    BIO_free(cert_bio);
    return Error(Errc::kCrypto, openssl_error("the client certificate PEM does not parse"));
  }
  const int used = SSL_CTX_use_certificate(ctx, cert);
  X509_free(cert);
  if (used != 1) {
    BIO_free(cert_bio);
    return Error(Errc::kCrypto, openssl_error("the client certificate was refused"));
  }
  // The certificates after the leaf (an issuing CA's, docs/SECURITY.md) go with it: the broker
  // holds only the root.
  while (X509* intermediate = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, intermediate) != 1) {
      X509_free(intermediate);
      BIO_free(cert_bio);
      return Error(Errc::kCrypto, openssl_error("the client certificate chain was refused"));
    }
  }
  ERR_clear_error();  // the end of the PEM data
  BIO_free(cert_bio);

  BIO* key_bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  if (key == nullptr) return Error(Errc::kCrypto, openssl_error("the client key PEM does not parse"));
  const int key_used = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (key_used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return Error(Errc::kCrypto, openssl_error("the client key does not match its certificate"));
  }
  return holder;
}

common::Result<std::shared_ptr<TlsContext>> TlsContext::create_from_files(
    const std::filesystem::path& ca_pem, const std::filesystem::path& cert_pem,
    const std::filesystem::path& key_pem, std::string_view broker_host) {
  std::string contents[3];
  const std::filesystem::path* paths[3] = {&ca_pem, &cert_pem, &key_pem};
  for (int i = 0; i < 3; ++i) {
    std::ifstream in(*paths[i], std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in || text.str().empty()) return Error(Errc::kIo, "cannot read " + paths[i]->string());
    contents[i] = text.str();
  }
  return create(contents[0], contents[1], contents[2], broker_host);
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// libmosquitto calls plain C functions; these forward to the session in userdata.
struct SessionTrampolines {
  static void connected(struct mosquitto*, void* self, int rc, int, const mosquitto_property*) {
    static_cast<MosquittoSession*>(self)->handle_connect(rc);
  }
  static void disconnected(struct mosquitto*, void* self, int rc, const mosquitto_property*) {
    static_cast<MosquittoSession*>(self)->handle_disconnect(rc);
  }
  static void published(struct mosquitto*, void* self, int mid, int, const mosquitto_property*) {
    static_cast<MosquittoSession*>(self)->handle_published(mid);
  }
  static void message(struct mosquitto*, void* self, const struct mosquitto_message* m,
                      const mosquitto_property*) {
    auto* session = static_cast<MosquittoSession*>(self);
    if (session->callbacks_.on_message) {
      session->callbacks_.on_message(m->topic, std::string_view(static_cast<const char*>(m->payload),
                                                                static_cast<std::size_t>(m->payloadlen)));
    }
  }
  static void log(struct mosquitto*, void* self, int level, const char* line) {
    auto* session = static_cast<MosquittoSession*>(self);
    if (level == MOSQ_LOG_ERR && session->callbacks_.on_error_log) session->callbacks_.on_error_log(line);
  }
};

MosquittoSession::MosquittoSession(SessionConfig config, SessionCallbacks callbacks)
    : config_(std::move(config)), callbacks_(std::move(callbacks)) {}

common::Result<std::unique_ptr<MosquittoSession>> MosquittoSession::create(SessionConfig config,
                                                                           SessionCallbacks callbacks) {
  if (config.client_id.empty()) return Error(Errc::kInvalidArgument, "a session needs a client id");
  if (!config.tls)
    return Error(Errc::kInvalidArgument, "a session needs a TLS context (the broker requires mTLS)");
  std::unique_ptr<MosquittoSession> session(new MosquittoSession(std::move(config), std::move(callbacks)));
  session->mosq_ = new_client_without_wakeup_pair(session->config_.client_id, session.get());
  if (session->mosq_ == nullptr) return Error(Errc::kInternal, "mosquitto_new failed (out of memory?)");
  mosquitto_int_option(session->mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(session->mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  int rc = mosquitto_void_option(session->mosq_, MOSQ_OPT_SSL_CTX, session->config_.tls->native());
  if (rc != MOSQ_ERR_SUCCESS) return mosquitto_error("cannot use the TLS context", rc);
  mosquitto_int_option(session->mosq_, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
  if (const auto& will = session->config_.will) {
    rc = mosquitto_will_set_v5(session->mosq_, will->topic.c_str(), static_cast<int>(will->payload.size()),
                               will->payload.data(), will->qos, will->retain, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return mosquitto_error("cannot set the last will", rc);
  }
  mosquitto_connect_v5_callback_set(session->mosq_, &SessionTrampolines::connected);
  mosquitto_disconnect_v5_callback_set(session->mosq_, &SessionTrampolines::disconnected);
  mosquitto_message_v5_callback_set(session->mosq_, &SessionTrampolines::message);
  mosquitto_publish_v5_callback_set(session->mosq_, &SessionTrampolines::published);
  if (session->callbacks_.on_error_log) mosquitto_log_callback_set(session->mosq_, &SessionTrampolines::log);
  return session;
}

MosquittoSession::~MosquittoSession() {
  if (mosq_ != nullptr) mosquitto_destroy(mosq_);
}

common::Status MosquittoSession::connect() {
  // OpenSSL's error queue is per thread and shared by every session on it: an error another
  // session (or the last attempt) left there would make this handshake fail at once.
  ERR_clear_error();
  // A connect after a drop starts from a fresh socket; stale queued packets are dropped with it.
  const int rc = connects_ == 0 ? mosquitto_connect_async(mosq_, config_.host.c_str(), config_.port,
                                                          config_.keepalive_seconds)
                                : mosquitto_reconnect_async(mosq_);
  ++connects_;
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
    active_ = false;
    return mosquitto_error("connect failed", rc);
  }
  active_ = true;
  current_ = {};
  return common::ok_status();
}

void MosquittoSession::disconnect() {
  if (!active_) return;
  mosquitto_disconnect(mosq_);
}

void MosquittoSession::disconnect_when_acknowledged() {
  if (!connected_ || last_mid_ == 0) {
    disconnect();
    return;
  }
  disconnect_when_acknowledged_ = true;
}

void MosquittoSession::handle_published(int mid) {
  if (mid != last_mid_) return;
  last_mid_ = 0;
  if (disconnect_when_acknowledged_) {
    disconnect_when_acknowledged_ = false;
    disconnect();
  }
}

void MosquittoSession::reset() {
  const int fd = socket();
  if (fd < 0) return;
  sample_wire_counters();
  // No DISCONNECT packet: the broker sees the connection die and publishes the last will.
  ::shutdown(fd, SHUT_RDWR);
}

void MosquittoSession::abandon() {
  if (const int fd = socket(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  connected_ = false;
  active_ = false;
  closed_connections_.bytes_sent += current_.bytes_sent;
  closed_connections_.bytes_received += current_.bytes_received;
  current_ = {};
}

common::Status MosquittoSession::publish(const std::string& topic, std::string_view payload, int qos,
                                         bool retain) {
  if (!connected_) return Error(Errc::kUnavailable, "not connected");
  int mid = 0;
  const int rc = mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                                      payload.data(), qos, retain, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return mosquitto_error("publish failed", rc);
  if (qos > 0) last_mid_ = mid;
  return common::ok_status();
}

common::Status MosquittoSession::subscribe(const std::string& filter, int qos) {
  if (!connected_) return Error(Errc::kUnavailable, "not connected");
  const int rc = mosquitto_subscribe_v5(mosq_, nullptr, filter.c_str(), qos, 0, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return mosquitto_error("subscribe failed", rc);
  return common::ok_status();
}

int MosquittoSession::socket() const noexcept { return mosq_ == nullptr ? -1 : mosquitto_socket(mosq_); }

bool MosquittoSession::want_write() const noexcept { return mosquitto_want_write(mosq_); }

void MosquittoSession::on_readable() {
  handle_loop_result(mosquitto_loop_read(mosq_, 16));
  sample_wire_counters();
}

void MosquittoSession::on_hangup() {
  if (!active_) return;
  // While libmosquitto waits for a TLS handshake it reports a refused or reset connection as
  // success, so the socket would hang up forever unnoticed.
  if (const int fd = socket(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  handle_disconnect(MOSQ_ERR_CONN_LOST);
}

void MosquittoSession::on_writable() {
  // A TLS handshake that must write (its TCP connect was still in progress, as when the broker's
  // listen backlog is full) makes no progress in loop_write, which only flushes MQTT packets:
  // libmosquitto's own loop advances it from loop_read, so do the same. Without this the
  // connection waits silently until the keepalive gives up on it, 30 s later.
  if (!connected_) handle_loop_result(mosquitto_loop_read(mosq_, 1));
  if (active_) handle_loop_result(mosquitto_loop_write(mosq_, 16));
  sample_wire_counters();
}

void MosquittoSession::on_idle() {
  if (!active_) return;
  handle_loop_result(mosquitto_loop_misc(mosq_));
}

void MosquittoSession::handle_loop_result(int rc) {
  if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_CONN_PENDING || !active_) return;
  // libmosquitto's own loop would now close the socket and call on_disconnect; with an external
  // loop that is ours to do (a reset during the TLS handshake, for one, is reported only here).
  if (const int fd = socket(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  handle_disconnect(rc == MOSQ_ERR_NO_CONN ? MOSQ_ERR_CONN_LOST : rc);
}

void MosquittoSession::handle_connect(int reason_code) {
  connected_ = reason_code == 0;
  last_mid_ = 0;  // a clean start: nothing of an earlier connection is resent
  disconnect_when_acknowledged_ = false;
  if (callbacks_.on_connected) callbacks_.on_connected(reason_code);
  if (!connected_) {
    mosquitto_disconnect(mosq_);
  }
}

void MosquittoSession::handle_disconnect(int reason_code) {
  const bool was_active = active_;
  connected_ = false;
  active_ = false;
  last_mid_ = 0;
  disconnect_when_acknowledged_ = false;
  closed_connections_.bytes_sent += current_.bytes_sent;
  closed_connections_.bytes_received += current_.bytes_received;
  current_ = {};
  if (was_active && callbacks_.on_disconnected) callbacks_.on_disconnected(reason_code);
}

void MosquittoSession::sample_wire_counters() {
  const int fd = socket();
  if (fd < 0) return;
  struct tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t length = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) == 0) {
    current_.bytes_sent = info.tcpi_bytes_acked;
    current_.bytes_received = info.tcpi_bytes_received;
  }
}

WireCounters MosquittoSession::wire() const noexcept {
  return {closed_connections_.bytes_sent + current_.bytes_sent,
          closed_connections_.bytes_received + current_.bytes_received};
}

}  // namespace fota::client::mosquitto
