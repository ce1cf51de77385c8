#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tollgate::test {

namespace {

int open_socket(std::uint16_t port, std::chrono::milliseconds timeout, bool throw_on_refuse) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    if (throw_on_refuse)
      throw std::runtime_error(std::string{"connect failed: "} + std::strerror(errno));
    return -1;
  }
  return fd;
}

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

} // namespace

connection::connection(std::uint16_t port, std::chrono::milliseconds timeout)
  : fd_(open_socket(port, timeout, true)) {}

connection::~connection() {
  if (fd_ >= 0)
    ::close(fd_);
}

void connection::send(const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0)
      throw std::runtime_error("send failed");
    off += static_cast<std::size_t>(n);
  }
}

bool connection::fill() {
  char tmp[16384];
  const auto n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0)
    return false;
  buf_.append(tmp, static_cast<std::size_t>(n));
  return true;
}

std::optional<http_response> connection::read_response() {
  std::size_t end = 0;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill())
      return std::nullopt;
  http_response r;
  const std::string head = buf_.substr(0, end);
  buf_.erase(0, end + 4);
  std::size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  const auto sp = status_line.find(' ');
  r.status = std::stoi(status_line.substr(sp + 1, 3));
  while (line_end != std::string::npos) {
    const auto start = line_end + 2;
    line_end = head.find("\r\n", start);
    const auto line = head.substr(start, line_end == std::string::npos ? std::string::npos
                                                                       : line_end - start);
    const auto colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    auto value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.erase(0, 1);
    r.headers[lower(line.substr(0, colon))] = value;
  }
  if (r.header("transfer-encoding") == "chunked") {
    // The whole chunked body, de-chunked (ends with the 0-size chunk).
    for (;;) {
      std::size_t eol = 0;
      while ((eol = buf_.find("\r\n")) == std::string::npos)
        if (!fill())
          return std::nullopt;
      const auto size = std::stoul(buf_.substr(0, eol), nullptr, 16);
      while (buf_.size() < eol + 2 + size + 2)
        if (!fill())
          return std::nullopt;
      r.body.append(buf_, eol + 2, size);
      buf_.erase(0, eol + 2 + size + 2);
      if (size == 0)
        return r;
    }
  }
  const auto len_text = r.header("content-length");
  const std::size_t len = len_text.empty() ? 0 : std::stoul(len_text);
  while (buf_.size() < len)
    if (!fill())
      return std::nullopt;
  r.body = buf_.substr(0, len);
  buf_.erase(0, len);
  return r;
}

bool connection::read_until(const std::string& needle, std::string& seen) {
  // Each round searches only what is new (and the needle's width before
  // it): a body of megabytes stays linear.
  std::size_t from = 0;
  while (buf_.find(needle, from) == std::string::npos) {
    from = buf_.size() >= needle.size() ? buf_.size() - needle.size() + 1 : 0;
    if (!fill())
      return false;
  }
  seen = buf_;
  return true;
}

bool connection::closed_by_peer(std::string* seen) {
  for (;;) {
    char tmp[4096];
    const auto n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0)
      return true;
    if (n < 0)
      return errno == ECONNRESET;  // EAGAIN: the timeout passed, still open
    if (seen != nullptr)
      seen->append(tmp, static_cast<std::size_t>(n));
  }
}

void connection::shut_write() { ::shutdown(fd_, SHUT_WR); }

bool connection::nothing_received() {
  char c = 0;
  return buf_.empty() && ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0
         && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::string make_request(const std::string& method, const std::string& target,
                         const std::string& extra_headers, const std::string& body) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers;
  if (!body.empty() || method == "POST" || method == "PUT")
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "\r\n";
  r += body;
  return r;
}

http_response request(std::uint16_t port, const std::string& method, const std::string& target,
                      const std::string& extra_headers, const std::string& body) {
  connection c{port};
  c.send(make_request(method, target, extra_headers, body));
  auto r = c.read_response();
  if (!r)
    throw std::runtime_error("no response to " + method + " " + target);
  return *r;
}

bool connect_refused(std::uint16_t port) {
  const int fd = open_socket(port, std::chrono::seconds{1}, false);
  if (fd < 0)
    return true;
  ::close(fd);
  return false;
}

} // namespace tollgate::test
