// The upstream client's TLS path against a blocking TLS server on 127.0.0.1
// whose self-signed certificate is made in memory at test time (no network,
// no key material in the repository): trust through ca_file, rejection by
// the default store, hostname verification, and the verify_tls escape hatch.

#include "http/client/client.hpp"

#include "support/temp_dir.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <catch2/catch.hpp>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace uc = tollgate::http::client;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

constexpr auto bound = 5s;  // no wait in these tests may hang a failing run

// ---------------------------------------------------------------------------
// A self-signed certificate, made with OpenSSL 3 and written as PEM files.

struct openssl_free {
  void operator()(EVP_PKEY_CTX* p) const noexcept { EVP_PKEY_CTX_free(p); }
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
  void operator()(X509* p) const noexcept { X509_free(p); }
  void operator()(X509_EXTENSION* p) const noexcept { X509_EXTENSION_free(p); }
  void operator()(BIO* p) const noexcept { BIO_free(p); }
};
template <class T>
using ossl_ptr = std::unique_ptr<T, openssl_free>;

/// Throws with OpenSSL's oldest queued error, and clears the queue.
[[noreturn]] void fail(const std::string& what) {
  char reason[256] = "no OpenSSL error queued";
  if (const auto e = ERR_get_error(); e != 0)
    ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  throw std::runtime_error("test certificate: " + what + ": " + reason);
}

/// An EC P-256 key: what EVP_EC_gen("P-256") does, without the C-style
/// cast that macro expands to (-Wold-style-cast).
ossl_ptr<EVP_PKEY> make_key() {
  ossl_ptr<EVP_PKEY_CTX> ctx{EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr)};
  if (!ctx)
    fail("EVP_PKEY_CTX_new_from_name");
  if (EVP_PKEY_keygen_init(ctx.get()) <= 0)
    fail("EVP_PKEY_keygen_init");
  if (EVP_PKEY_CTX_set_group_name(ctx.get(), "P-256") <= 0)
    fail("EVP_PKEY_CTX_set_group_name");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_generate(ctx.get(), &raw) <= 0)
    fail("EVP_PKEY_generate");
  return ossl_ptr<EVP_PKEY>{raw};
}

/// Adds a v3 extension given in openssl.cnf syntax; the certificate is its
/// own issuer.
void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX v3{};
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  ossl_ptr<X509_EXTENSION> ext{X509V3_EXT_conf_nid(nullptr, &v3, nid, value)};
  if (!ext)
    fail(std::string{"X509V3_EXT_conf_nid "} + OBJ_nid2sn(nid));
  if (X509_add_ext(cert, ext.get(), -1) != 1)  // adds a copy
    fail(std::string{"X509_add_ext "} + OBJ_nid2sn(nid));
}

struct cert_files {
  std::string cert;  ///< PEM certificate: the server's chain and the client's ca_file
  std::string key;   ///< PEM private key (PKCS#8, unencrypted)
};

/// Writes a self-signed CA:TRUE certificate for `common_name` with the
/// subjectAltName `san` ("DNS:…,IP:…") and its key into `dir`.
cert_files make_self_signed(const tollgate::test::temp_dir& dir, const std::string& file_stem,
                            const std::string& common_name, const std::string& san) {
  static std::atomic<long> serial{1};
  const auto key = make_key();
  ossl_ptr<X509> cert{X509_new()};
  if (!cert)
    fail("X509_new");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1)
    fail("X509_set_version");
  if (ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++) != 1)
    fail("ASN1_INTEGER_set");
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60L * 60) == nullptr
      || X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 60 * 60) == nullptr)
    fail("X509_gmtime_adj");
  if (X509_set_pubkey(cert.get(), key.get()) != 1)
    fail("X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());  // owned by the certificate
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                 -1, -1, 0)
      != 1)
    fail("X509_NAME_add_entry_by_txt");
  if (X509_set_issuer_name(cert.get(), name) != 1)  // copies
    fail("X509_set_issuer_name");
  // CA:TRUE lets the certificate be its own trust anchor in ca_file;
  // digitalSignature is what a TLS server key must be allowed to do.
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_extension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign");
  add_extension(cert.get(), NID_subject_key_identifier, "hash");  // needs the public key
  add_extension(cert.get(), NID_subject_alt_name, san.c_str());
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
    fail("X509_sign");

  cert_files out{dir.str(file_stem + ".crt"), dir.str(file_stem + ".key")};
  {
    ossl_ptr<BIO> bio{BIO_new_file(out.cert.c_str(), "w")};
    if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1)
      fail("writing " + out.cert);
  }
  {
    ossl_ptr<BIO> bio{BIO_new_file(out.key.c_str(), "w")};
    if (!bio
        || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr)
             != 1)
      fail("writing " + out.key);
  }
  return out;
}

// ---------------------------------------------------------------------------
// A blocking TLS server on 127.0.0.1:0.

struct seen_request {
  std::string method;
  std::string target;
  std::string body;
  std::string sni;  ///< the server name the client sent, "" when none
};

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

/// Reads one request with a Content-Length body; false at EOF or on error.
template <class SyncReadStream>
bool read_request(SyncReadStream& s, seen_request& out) {
  std::string buf;
  boost::system::error_code ec;
  const auto n = net::read_until(s, net::dynamic_buffer(buf), "\r\n\r\n", ec);
  if (ec)
    return false;
  const std::string head = buf.substr(0, n);
  buf.erase(0, n);
  const auto line_end = head.find("\r\n");
  const auto line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos)
    return false;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::size_t content_length = 0;
  for (auto pos = line_end + 2; pos < head.size();) {
    const auto end = head.find("\r\n", pos);
    if (end == pos)
      break;
    const auto field = head.substr(pos, end - pos);
    const auto colon = field.find(':');
    if (colon != std::string::npos && lower(field.substr(0, colon)) == "content-length")
      content_length = std::stoul(field.substr(colon + 1));
    pos = end + 2;
  }
  if (buf.size() < content_length)
    net::read(s, net::dynamic_buffer(buf), net::transfer_exactly(content_length - buf.size()), ec);
  if (ec)
    return false;
  out.body = buf.substr(0, content_length);
  return true;
}

/// Serves one request per connection: TLS handshake, one request, the fixed
/// answer "ok", close_notify. A failed handshake (the client rejected the
/// certificate) only ends that connection.
class tls_server {
public:
  explicit tls_server(const cert_files& files)
    : acceptor_(ioc_, {net::ip::make_address("127.0.0.1"), 0}) {
    ctx_.use_certificate_chain_file(files.cert);
    ctx_.use_private_key_file(files.key, ssl::context::pem);
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { accept_loop(); });
  }

  ~tls_server() {
    stop_ = true;
    {
      // Wakes the blocking accept.
      boost::system::error_code ec;
      tcp::socket s{ioc_};
      s.connect({net::ip::make_address("127.0.0.1"), port_}, ec);
    }
    thread_.join();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    {
      // Unblocks sessions still in a handshake, a read or the wait for the
      // client's close_notify. A session takes its descriptor out of `live_`
      // before closing it, so none of these is a reused descriptor.
      std::lock_guard<std::mutex> lock{mutex_};
      for (const int fd : live_)
        ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : sessions_)
      t.join();
  }

  tls_server(const tls_server&) = delete;
  tls_server& operator=(const tls_server&) = delete;

  std::string url(const std::string& host, const std::string& path) const {
    return "https://" + host + ":" + std::to_string(port_) + path;
  }

  /// Waits until `n` connections have ended; false after `bound`.
  bool wait_ended(int n) {
    std::unique_lock<std::mutex> lock{mutex_};
    return ended_cv_.wait_for(lock, bound, [&] { return ended_ >= n; });
  }

  int handshake_failures() const { return handshake_failures_.load(); }

  std::vector<seen_request> seen() {
    std::lock_guard<std::mutex> lock{mutex_};
    return seen_;
  }

private:
  void accept_loop() {
    for (;;) {
      tcp::socket s{ioc_};
      boost::system::error_code ec;
      acceptor_.accept(s, ec);
      if (stop_ || ec)
        return;
      const int fd = s.native_handle();
      {
        std::lock_guard<std::mutex> lock{mutex_};
        live_.insert(fd);
      }
      sessions_.emplace_back([this, sock = std::move(s)]() mutable {
        const int session_fd = sock.native_handle();
        {
          ssl::stream<tcp::socket> stream{std::move(sock), ctx_};
          serve(stream);
          std::lock_guard<std::mutex> lock{mutex_};
          live_.erase(session_fd);
        }  // the descriptor closes here, after it has left `live_`
        std::lock_guard<std::mutex> lock{mutex_};
        ++ended_;
        ended_cv_.notify_all();
      });
    }
  }

  void serve(ssl::stream<tcp::socket>& stream) {
    boost::system::error_code ec;
    stream.handshake(ssl::stream_base::server, ec);
    if (ec) {
      ++handshake_failures_;
      ERR_clear_error();  // this thread's queue: nothing may leak into the next test
      return;
    }
    seen_request r;
    if (const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name))
      r.sni = sni;
    if (!read_request(stream, r))
      return;
    {
      std::lock_guard<std::mutex> lock{mutex_};
      seen_.push_back(r);
    }
    static const std::string answer =
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
    net::write(stream, net::buffer(answer), ec);
    if (ec)
      return;
    // Sends close_notify and waits for the client's (or its EOF: the client
    // pools the connection and closes it when it is destroyed).
    stream.shutdown(ec);
    ERR_clear_error();
  }

  net::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_server};
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshake_failures_{0};
  std::thread thread_;
  std::vector<std::thread> sessions_;  ///< touched by the accept thread, then the destructor
  std::mutex mutex_;
  std::set<int> live_;  ///< descriptors of the open connections
  std::vector<seen_request> seen_;
  int ended_ = 0;
  std::condition_variable ended_cv_;
};

// ---------------------------------------------------------------------------
// One call, observed.

/// What one call reported, collected from the I/O thread.
struct probe {
  std::promise<void> done;
  std::future<void> done_future = done.get_future();
  std::atomic<int> done_calls{0};
  std::atomic<int> head_calls{0};
  std::mutex m;
  std::string error;
  uc::upstream_head head;
  std::string body;

  bool finished() { return done_future.wait_for(bound) == std::future_status::ready; }
};

uc::upstream_handlers handlers(const std::shared_ptr<probe>& p) {
  uc::upstream_handlers h;
  h.on_head = [p](const uc::upstream_head&) { p->head_calls++; };
  h.on_done = [p](std::string e, uc::upstream_head hd, std::string b) {
    {
      std::lock_guard<std::mutex> lock{p->m};
      p->error = std::move(e);
      p->head = std::move(hd);
      p->body = std::move(b);
    }
    if (p->done_calls++ == 0)
      p->done.set_value();
  };
  return h;
}

/// Runs one POST "ping" to `url` and waits (bounded) for on_done.
std::shared_ptr<probe> call(uc::client& c, const std::string& url) {
  uc::upstream_request req;
  req.method = "POST";
  req.url = url;
  req.headers = {{"Content-Type", "text/plain"}};
  req.body = "ping";
  req.timeout = 4s;  // under `bound`: a stuck handshake ends as "timeout", not a hang
  auto p = std::make_shared<probe>();
  c.start(std::move(req), handlers(p));
  return p;
}

uc::client::options trusting(const cert_files& files) {
  uc::client::options o;
  o.ca_file = files.cert;
  return o;
}

} // namespace

TEST_CASE("upstream client TLS: a certificate trusted through ca_file", "[http][client][tls]") {
  tollgate::test::temp_dir dir;
  const auto files = make_self_signed(dir, "localhost", "localhost", "DNS:localhost,IP:127.0.0.1");
  tls_server server{files};
  uc::client c{trusting(files)};

  std::string host;
  std::string expected_sni;
  SECTION("by name (subjectAltName DNS:localhost, sent as SNI)") {
    // The client resolves names; if localhost also maps to ::1, where nothing
    // listens, the connect moves on to 127.0.0.1.
    host = "localhost";
    expected_sni = "localhost";
  }
  SECTION("by address (subjectAltName IP:127.0.0.1, no SNI)") {
    host = "127.0.0.1";
    expected_sni = "";
  }

  auto p = call(c, server.url(host, "/x"));
  REQUIRE(p->finished());
  std::lock_guard<std::mutex> lock{p->m};
  CHECK(p->error.empty());
  CHECK(p->head.status == 200);
  CHECK(p->head.header("content-type") == "text/plain");
  CHECK(p->body == "ok");
  CHECK(p->head_calls == 1);
  CHECK(p->done_calls == 1);

  const auto seen = server.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].target == "/x");
  CHECK(seen[0].body == "ping");
  CHECK(seen[0].sni == expected_sni);
  CHECK(server.handshake_failures() == 0);
}

TEST_CASE("upstream client TLS: the default trust store rejects a self-signed certificate",
          "[http][client][tls]") {
  tollgate::test::temp_dir dir;
  const auto files = make_self_signed(dir, "localhost", "localhost", "DNS:localhost,IP:127.0.0.1");
  tls_server server{files};
  uc::client c{{}};  // verify_tls, the system's default verify paths

  auto p = call(c, server.url("127.0.0.1", "/x"));
  REQUIRE(p->finished());
  {
    std::lock_guard<std::mutex> lock{p->m};
    CHECK_THAT(p->error, Catch::Matchers::StartsWith("tls"));
    CHECK_THAT(p->error, Catch::Matchers::Contains("certificate verify failed"));
    CHECK(p->head.status == 0);
    CHECK(p->body.empty());
  }
  CHECK(p->head_calls == 0);
  CHECK(c.idle_connections() == 0);

  // The server saw the handshake fail and carried on.
  REQUIRE(server.wait_ended(1));
  CHECK(server.handshake_failures() == 1);
  CHECK(server.seen().empty());
}

TEST_CASE("upstream client TLS: a trusted certificate for another host is rejected",
          "[http][client][tls]") {
  tollgate::test::temp_dir dir;
  // Trusted (it is the ca_file), but it names neither localhost nor 127.0.0.1.
  const auto files = make_self_signed(dir, "other", "other.example", "DNS:other.example");
  tls_server server{files};
  uc::client c{trusting(files)};

  std::string host;
  SECTION("by address") { host = "127.0.0.1"; }
  SECTION("by name") { host = "localhost"; }

  auto p = call(c, server.url(host, "/x"));
  REQUIRE(p->finished());
  {
    std::lock_guard<std::mutex> lock{p->m};
    CHECK_THAT(p->error, Catch::Matchers::StartsWith("tls"));
    CHECK_THAT(p->error, Catch::Matchers::Contains("certificate verify failed"));
    CHECK(p->head.status == 0);
  }
  CHECK(p->head_calls == 0);

  REQUIRE(server.wait_ended(1));
  CHECK(server.handshake_failures() == 1);
  CHECK(server.seen().empty());
}

TEST_CASE("upstream client TLS: verify_tls = false accepts an untrusted certificate",
          "[http][client][tls]") {
  // The escape hatch: no chain and no host name check at all, so the
  // certificate names another host and nothing trusts it.
  tollgate::test::temp_dir dir;
  const auto files = make_self_signed(dir, "other", "other.example", "DNS:other.example");
  tls_server server{files};
  uc::client::options o;
  o.verify_tls = false;  // ca_file stays empty: the default store
  uc::client c{o};

  auto p = call(c, server.url("127.0.0.1", "/x"));
  REQUIRE(p->finished());
  std::lock_guard<std::mutex> lock{p->m};
  CHECK(p->error.empty());
  CHECK(p->head.status == 200);
  CHECK(p->body == "ok");
  CHECK(server.handshake_failures() == 0);
  CHECK(server.seen().size() == 1);
}
