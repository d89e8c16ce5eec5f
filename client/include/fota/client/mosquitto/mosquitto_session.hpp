// SPDX-License-Identifier: Apache-2.0
// An MQTT 5 over mutual-TLS connection built on libmosquitto's non-blocking client API, driven by
// the caller's own poll loop (socket(), want_write(), on_readable(), on_writable(), on_idle()).
// Thousands of these share one thread: unlike Paho, the cost of a message does not grow with the
// number of clients in the process (DESIGN.md, "Platform facts").
// MosquittoDeviceClient (device_client.hpp) runs the update engine over it; fota-sim's virtual
// devices use it directly. C++17.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fota/common/result.hpp"

struct mosquitto;
typedef struct ssl_ctx_st SSL_CTX;  // NOLINT: OpenSSL's forward declaration

namespace fota::client::mosquitto {

// Initialises libmosquitto for the lifetime of the object; create one before any session.
class MosquittoLibrary {
 public:
  MosquittoLibrary();
  ~MosquittoLibrary();
  MosquittoLibrary(const MosquittoLibrary&) = delete;
  MosquittoLibrary& operator=(const MosquittoLibrary&) = delete;
};

// A client TLS context: trusts the fleet CA (and checks the broker's certificate names 127.0.0.1),
// presents the given certificate. Built from memory, so certificates issued on the fly never touch
// the disk. Errors: kCrypto naming what OpenSSL refused.
class TlsContext {
 public:
  static common::Result<std::shared_ptr<TlsContext>> create(std::string_view ca_pem,
                                                            std::string_view cert_pem,
                                                            std::string_view key_pem,
                                                            std::string_view broker_host = "127.0.0.1");
  // The same from PEM files (a device's provisioned CA, certificate and key). Errors: kIo naming
  // the file that cannot be read, then as create().
  static common::Result<std::shared_ptr<TlsContext>> create_from_files(const std::filesystem::path& ca_pem,
                                                                       const std::filesystem::path& cert_pem,
                                                                       const std::filesystem::path& key_pem,
                                                                       std::string_view broker_host);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* native() const noexcept { return ctx_; }

 private:
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

struct LastWill {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = true;
};

struct SessionConfig {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string client_id;
  std::shared_ptr<TlsContext> tls;
  int keepalive_seconds = 30;
  std::optional<LastWill> will;
};

struct SessionCallbacks {
  // CONNACK arrived; reason 0 = accepted.
  std::function<void(int reason_code)> on_connected;
  // The connection ended (reason 0 = we asked for it).
  std::function<void(int reason_code)> on_disconnected;
  std::function<void(std::string_view topic, std::string_view payload)> on_message;
  // libmosquitto's own error lines (such as the OpenSSL reason a handshake failed), which say
  // more than a reason code. Optional: without it none are formatted.
  std::function<void(std::string_view message)> on_error_log;
};

// Byte counters of the TCP connection (TLS records and all): what actually crossed the wire.
struct WireCounters {
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
};

class MosquittoSession {
 public:
  // Errors: kInvalidArgument (empty client id, no TLS context), kInternal (libmosquitto refused).
  static common::Result<std::unique_ptr<MosquittoSession>> create(SessionConfig config,
                                                                  SessionCallbacks callbacks);
  ~MosquittoSession();
  MosquittoSession(const MosquittoSession&) = delete;
  MosquittoSession& operator=(const MosquittoSession&) = delete;

  const std::string& client_id() const noexcept { return config_.client_id; }

  // Starts a non-blocking connect (TCP, then TLS and CONNECT as the loop drives it). Clean start.
  common::Status connect();
  // Graceful DISCONNECT (no last will).
  void disconnect();
  // The same once the broker has acknowledged the last QoS 1/2 publish of this connection (it
  // acknowledges in order, so every earlier one too). Closing right behind unacknowledged
  // publishes can leave acknowledgements unread, which makes the kernel reset the connection, and
  // the broker then drops what it had not read yet (the reports before a reboot, the offline
  // presence). The caller bounds the wait (reset() or abandon()).
  void disconnect_when_acknowledged();
  // Cuts the connection without a DISCONNECT packet, like a pulled cable: the broker publishes
  // the last will. on_disconnected follows from the next on_readable().
  void reset();
  // Gives up on a connection attempt that is not finishing: closes whatever socket there is
  // without callbacks; the next connect() starts afresh.
  void abandon();
  bool connected() const noexcept { return connected_; }
  // True between connect() and the end of the connection.
  bool active() const noexcept { return active_; }

  // Queued for sending; errors when not connected (the caller decides whether that matters).
  common::Status publish(const std::string& topic, std::string_view payload, int qos, bool retain = false);
  common::Status subscribe(const std::string& filter, int qos);

  // -1 when there is no socket.
  int socket() const noexcept;
  bool want_write() const noexcept;
  // Poll loop hooks: readable socket, writable socket, and about once a second for keepalive.
  void on_readable();
  void on_writable();
  void on_idle();
  // The socket reported POLLHUP or POLLERR and is still open after on_readable().
  void on_hangup();

  // Totals over every connection this session made.
  WireCounters wire() const noexcept;
  std::uint32_t connects() const noexcept { return connects_; }

 private:
  MosquittoSession(SessionConfig config, SessionCallbacks callbacks);
  friend struct SessionTrampolines;  // libmosquitto's C callbacks
  void handle_connect(int reason_code);
  void handle_disconnect(int reason_code);
  void handle_published(int mid);
  void handle_loop_result(int rc);
  void sample_wire_counters();

  SessionConfig config_;
  SessionCallbacks callbacks_;
  struct mosquitto* mosq_ = nullptr;
  bool connected_ = false;
  bool active_ = false;
  std::uint32_t connects_ = 0;
  int last_mid_ = 0;  // message id of this connection's last QoS 1/2 publish; 0 = acknowledged
  bool disconnect_when_acknowledged_ = false;
  WireCounters closed_connections_;  // totals of connections already gone
  WireCounters current_;             // last sample of the open connection
};

}  // namespace fota::client::mosquitto
