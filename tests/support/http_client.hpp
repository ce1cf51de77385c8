#pragma once

// A deliberately small HTTP/1.1 client on raw sockets, so tests can send
// exactly the bytes they want: garbage, partial requests, pipelines.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace tollgate::test {

struct http_response {
  int status = 0;
  std::map<std::string, std::string> headers;  ///< lower-case names
  std::string body;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string{} : it->second;
  }
};

/// One TCP connection to 127.0.0.1:port.
class connection {
public:
  /// Connects; throws std::runtime_error when refused.
  explicit connection(std::uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::seconds{10});
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void send(const std::string& bytes);
  /// Half-closes: the server reads end of stream, the connection still reads.
  void shut_write();
  /// Reads one response; nullopt when the peer closed first.
  std::optional<http_response> read_response();
  /// Reads raw bytes until they contain `needle` (false: closed or timed
  /// out first); `seen` gets everything read so far on this connection.
  bool read_until(const std::string& needle, std::string& seen);
  /// True when the server closes the connection (EOF or reset) within the
  /// socket timeout; bytes that arrive first are discarded into `seen`.
  bool closed_by_peer(std::string* seen = nullptr);
  /// True when no byte from the server is waiting to be read now (does
  /// not wait, reads nothing).
  bool nothing_received();

private:
  bool fill();
  int fd_ = -1;
  std::string buf_;
};

/// Builds a request with Host and, for a body, Content-Length.
std::string make_request(const std::string& method, const std::string& target,
                         const std::string& extra_headers = {}, const std::string& body = {});

/// One request on a fresh connection.
http_response request(std::uint16_t port, const std::string& method, const std::string& target,
                      const std::string& extra_headers = {}, const std::string& body = {});

/// True when nothing listens on the port any more.
bool connect_refused(std::uint16_t port);

} // namespace tollgate::test
