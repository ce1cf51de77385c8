// mock_upstream: an OpenAI-compatible upstream for tests and benchmarks.
// Loopback only by default. One thread per connection (tests and wrk use a
// bounded number of connections), keep-alive, JSON and SSE answers.
//
//   mock_upstream --listen 127.0.0.1:0 [--latency-ms N] [--chunks N]
//                 [--chunk-interval-ms N] [--prompt-tokens N] [--completion-tokens N]
//
// Per request, headers override the defaults: X-Mock-Status (force a
// status), X-Mock-Latency-Ms, X-Mock-Chunks, X-Mock-No-Usage (omit usage),
// X-Mock-Retry-After (sent with a forced 429/503), X-Mock-Garbage (a 200
// whose body is not JSON), X-Mock-Break-After (a stream that stops after N
// chunks and closes the connection without its end), X-Mock-Chunk-Interval-Ms.
// GET /bytes/N streams N bytes of a known pattern; /echo describes the
// request it got; /upload reads its body piece by piece, printing the
// running total, and answers {"received": N}; /early answers 413 before
// reading any body.
// Any method on /echo... answers what it received (for the proxy's tests).

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <sstream>
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <cctype>
#include <thread>

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

struct settings {
  int latency_ms = 0;
  int chunks = 3;
  int chunk_interval_ms = 0;
  int prompt_tokens = 10;
  int completion_tokens = 20;
};

std::atomic<std::uint64_t> next_id{1};

int header_int(const http::request<http::string_body>& req, const char* name, int fallback) {
  const auto it = req.find(name);
  if (it == req.end())
    return fallback;
  try {
    return std::stoi(std::string{it->value()});
  } catch (...) {
    return fallback;
  }
}

std::string usage_json(int prompt, int completion) {
  return R"({"prompt_tokens":)" + std::to_string(prompt) + R"(,"completion_tokens":)"
         + std::to_string(completion) + R"(,"total_tokens":)" + std::to_string(prompt + completion)
         + "}";
}

std::string json_string(const std::string& s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return {buf.GetString(), buf.GetSize()};
}

void write_response(tcp::socket& sock, http::request<http::string_body>& req, unsigned status,
                    const std::string& body, const std::string& retry_after = {}) {
  http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  if (!retry_after.empty())
    res.set(http::field::retry_after, retry_after);
  res.keep_alive(req.keep_alive());
  res.body() = body;
  res.prepare_payload();
  beast::error_code ec;
  http::write(sock, res, ec);
}

void chat(tcp::socket& sock, http::request<http::string_body>& req, const settings& s) {
  rapidjson::Document d;
  d.Parse(req.body().c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("model") || !d["model"].IsString()) {
    write_response(sock, req, 400,
                   R"({"error":{"message":"bad request body","type":"invalid_request_error","code":null}})");
    return;
  }
  const std::string model = d["model"].GetString();
  const bool stream = d.HasMember("stream") && d["stream"].IsBool() && d["stream"].GetBool();
  const bool include_usage = req.find("X-Mock-No-Usage") == req.end()
                             && (!stream
                                 || (d.HasMember("stream_options") && d["stream_options"].IsObject()
                                     && d["stream_options"].HasMember("include_usage")
                                     && d["stream_options"]["include_usage"].IsBool()
                                     && d["stream_options"]["include_usage"].GetBool()));
  const auto id = "chatcmpl-mock-" + std::to_string(next_id++);
  const int chunks = header_int(req, "X-Mock-Chunks", s.chunks);
  const int break_after = header_int(req, "X-Mock-Break-After", -1);
  const int interval = header_int(req, "X-Mock-Chunk-Interval-Ms", s.chunk_interval_ms);
  if (req.find("X-Mock-Garbage") != req.end()) {
    write_response(sock, req, 200, "<html>this is not JSON</html>");
    return;
  }
  const auto created = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
  if (!stream) {
    std::string text;
    for (int i = 0; i < chunks; ++i)
      text += "word" + std::to_string(i) + " ";
    std::string body = R"({"id":")" + id + R"(","object":"chat.completion","created":)" + created
                       + R"(,"model":)" + json_string(model)
                       + R"(,"choices":[{"index":0,"message":{"role":"assistant","content":)"
                       + json_string(text) + R"(},"finish_reason":"stop"}])";
    if (include_usage)
      body += R"(,"usage":)" + usage_json(s.prompt_tokens, s.completion_tokens);
    body += "}";
    write_response(sock, req, 200, body);
    return;
  }
  // SSE: the header, then one event per chunk, written as they are made.
  std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
  beast::error_code ec;
  net::write(sock, net::buffer(head), ec);
  const auto send_chunk = [&](const std::string& data) {
    std::ostringstream hex;
    hex << std::hex << data.size();
    const auto framed = hex.str() + "\r\n" + data + "\r\n";
    net::write(sock, net::buffer(framed), ec);
  };
  for (int i = 0; i < chunks && !ec; ++i) {
    if (i == break_after) {
      sock.close(ec);
      return;
    }
    if (interval > 0 && i > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds{interval});
    send_chunk(R"(data: {"id":")" + id + R"(","object":"chat.completion.chunk","created":)"
               + created + R"(,"model":)" + json_string(model)
               + R"(,"choices":[{"index":0,"delta":{"content":"word)" + std::to_string(i)
               + R"( "},"finish_reason":null}]})" + "\n\n");
  }
  if (include_usage && !ec)
    send_chunk(R"(data: {"id":")" + id + R"(","object":"chat.completion.chunk","created":)"
               + created + R"(,"model":)" + json_string(model) + R"(,"choices":[],"usage":)"
               + usage_json(s.prompt_tokens, s.completion_tokens) + "}\n\n");
  if (!ec)
    send_chunk("data: [DONE]\n\n");
  if (!ec)
    net::write(sock, net::buffer(std::string{"0\r\n\r\n"}), ec);
}

void serve(tcp::socket sock, settings s) {
  beast::flat_buffer buf;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    beast::error_code ec;
    http::read_header(sock, buf, parser, ec);
    if (ec)
      return;
    if (parser.get().target().rfind("/early-ok", 0) == 0) {
      // Answers 200 right after the header (chunked), then reads the whole
      // body and ends the answer with how much came.
      beast::error_code wec;
      net::write(sock,
                 net::buffer(std::string{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                         "Transfer-Encoding: chunked\r\n\r\n"}),
                 wec);
      while (!ec && !wec && !parser.is_done())
        http::read_some(sock, buf, parser, ec);
      if (ec || wec)
        return;
      const auto text = "received " + std::to_string(parser.get().body().size());
      std::ostringstream hex;
      hex << std::hex << text.size();
      net::write(sock, net::buffer(hex.str() + "\r\n" + text + "\r\n0\r\n\r\n"), wec);
      if (wec || !parser.get().keep_alive())
        return;
      continue;
    }
    if (parser.get().target().rfind("/early", 0) == 0) {
      // Refuses the body before reading it, as a strict backend does: a
      // 413 right after the header, then a lingering close.
      http::response<http::string_body> res{http::status::payload_too_large,
                                            parser.get().version()};
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"error":"too large for the backend"})";
      res.keep_alive(false);
      res.prepare_payload();
      http::write(sock, res, ec);
      sock.shutdown(tcp::socket::shutdown_send, ec);
      char sink[4096];
      while (!ec)
        sock.read_some(net::buffer(sink), ec);
      return;
    }
    if (parser.get().target().rfind("/upload", 0) == 0) {
      // Reads the body piece by piece and prints the running total (one
      // line per read), so a test can tell it arrives while being sent.
      while (!ec && !parser.is_done()) {
        http::read_some(sock, buf, parser, ec);
        std::cout << "upload received " << parser.get().body().size() << std::endl;
      }
      if (ec)
        return;
      auto req = parser.release();
      write_response(sock, req, 200,
                     R"({"received":)" + std::to_string(req.body().size()) + R"(,"body":)"
                       + json_string(req.body().substr(0, 64)) + "}");
      if (!req.keep_alive())
        return;
      continue;
    }
    http::read(sock, buf, parser, ec);
    if (ec)
      return;
    auto req = parser.release();
    const int latency = header_int(req, "X-Mock-Latency-Ms", s.latency_ms);
    if (latency > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds{latency});
    const int forced = header_int(req, "X-Mock-Status", 0);
    const auto target = std::string{req.target()};
    if (forced >= 400) {
      const auto retry = req.find("X-Mock-Retry-After");
      write_response(sock, req, static_cast<unsigned>(forced),
                     R"({"error":{"message":"forced by X-Mock-Status","type":"mock_error","code":null}})",
                     retry == req.end() ? std::string{} : std::string{retry->value()});
    } else if (req.method() == http::verb::post && target == "/v1/chat/completions") {
      chat(sock, req, s);
    } else if (req.method() == http::verb::get && target.rfind("/bytes/", 0) == 0) {
      // N bytes, chunked, 64 KiB at a time: byte i is 'a' + i % 26. Writes
      // block while the reader takes nothing (for flow-control tests).
      std::size_t n = 0;
      try {
        n = std::stoull(target.substr(7));
      } catch (...) {
        n = 0;
      }
      std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n";
      beast::error_code wec;
      net::write(sock, net::buffer(head), wec);
      std::size_t sent = 0;
      while (!wec && sent < n) {
        const std::size_t k = std::min<std::size_t>(64 * 1024, n - sent);
        std::ostringstream hex;
        hex << std::hex << k;
        std::string frame = hex.str() + "\r\n";
        for (std::size_t i = 0; i < k; ++i)
          frame.push_back(static_cast<char>('a' + (sent + i) % 26));
        frame += "\r\n";
        net::write(sock, net::buffer(frame), wec);
        sent += k;
      }
      if (!wec)
        net::write(sock, net::buffer(std::string{"0\r\n\r\n"}), wec);
      if (wec)
        return;
    } else if (target.rfind("/echo", 0) == 0) {
      // What a proxied request looked like when it got here.
      std::string body = R"({"method":)" + json_string(std::string{req.method_string()})
                         + R"(,"target":)" + json_string(target) + R"(,"headers":{)";
      bool first = true;
      for (const auto& f : req) {
        std::string name{f.name_string()};
        for (auto& c : name)
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        body += (first ? "" : ",") + json_string(name) + ":" + json_string(std::string{f.value()});
        first = false;
      }
      body += R"(},"body":)" + json_string(req.body()) + "}";
      write_response(sock, req, 200, body);
    } else if (req.method() == http::verb::post && target == "/v1/responses") {
      const std::string full =
        R"({"id":"resp-mock","object":"response","status":"completed","output_text":"mock answer","output":[],"usage":{"input_tokens":)"
        + std::to_string(s.prompt_tokens) + R"(,"output_tokens":)"
        + std::to_string(s.completion_tokens) + "}}";
      rapidjson::Document d;
      d.Parse(req.body().c_str());
      const bool stream = !d.HasParseError() && d.IsObject() && d.HasMember("stream")
                          && d["stream"].IsBool() && d["stream"].GetBool();
      if (!stream) {
        write_response(sock, req, 200, full);
      } else {
        // The Responses API's stream: deltas, then response.completed with
        // the whole response and its usage.
        std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n";
        const auto chunk = [&](const std::string& data) {
          std::ostringstream hex;
          hex << std::hex << data.size();
          out += hex.str() + "\r\n" + data + "\r\n";
        };
        for (const char* word : {"mock ", "answer"})
          chunk(std::string{"event: response.output_text.delta\ndata: "}
                + R"({"type":"response.output_text.delta","delta":")" + word + "\"}\n\n");
        chunk("event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":"
              + full + "}\n\n");
        out += "0\r\n\r\n";
        beast::error_code wec;
        net::write(sock, net::buffer(out), wec);
        if (wec)
          return;
      }
    } else if (req.method() == http::verb::get && target == "/v1/models") {
      write_response(sock, req, 200,
                     R"({"object":"list","data":[{"id":"mock-model","object":"model","created":0,"owned_by":"mock"}]})");
    } else if (req.method() == http::verb::get && target == "/ping") {
      write_response(sock, req, 200, R"({"status":"pong"})");
    } else if (req.method() == http::verb::post && target == "/v1/images/generations") {
      write_response(sock, req, 200,
                     R"({"created":0,"data":[{"url":"http://127.0.0.1/mock.png","revised_prompt":"mock"}]})");
    } else {
      write_response(sock, req, 404,
                     R"({"error":{"message":"no such mock route","type":"invalid_request_error","code":null}})");
    }
    if (!req.keep_alive())
      return;
  }
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"mock_upstream: an OpenAI-compatible upstream for tests and benchmarks"};
  std::string listen = "127.0.0.1:0";
  settings s;
  app.add_option("--listen", listen, "HOST:PORT (port 0: any; the port is printed)");
  app.add_option("--latency-ms", s.latency_ms, "delay before every answer");
  app.add_option("--chunks", s.chunks, "content chunks per completion");
  app.add_option("--chunk-interval-ms", s.chunk_interval_ms, "delay between stream chunks");
  app.add_option("--prompt-tokens", s.prompt_tokens, "usage.prompt_tokens reported");
  app.add_option("--completion-tokens", s.completion_tokens, "usage.completion_tokens reported");
  CLI11_PARSE(app, argc, argv);
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "mock_upstream: --listen HOST:PORT\n";
    return 2;
  }
  net::io_context ioc;
  tcp::acceptor acceptor{ioc, {net::ip::make_address(listen.substr(0, colon)),
                               static_cast<unsigned short>(std::stoi(listen.substr(colon + 1)))}};
  std::cout << "mock_upstream listening on http://" << listen.substr(0, colon) << ":"
            << acceptor.local_endpoint().port() << std::endl;
  for (;;) {
    tcp::socket sock{ioc};
    acceptor.accept(sock);
    sock.set_option(tcp::no_delay{true});
    std::thread{serve, std::move(sock), s}.detach();
  }
}
