#include "http/llm/demo.hpp"

#include "core/llm.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <atomic>

namespace tollgate::http::llm::demo {

namespace {

using writer = rapidjson::Writer<rapidjson::StringBuffer>;

void str(writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

std::string error(std::string_view message) {
  rapidjson::StringBuffer b;
  writer w{b};
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("message");
  str(w, message);
  w.Key("type");
  w.String("invalid_request_error");
  w.EndObject();
  w.EndObject();
  return b.GetString();
}

std::string next_id(const char* prefix) {
  static std::atomic<std::uint64_t> n{0};
  return std::string{prefix} + std::to_string(++n);
}

/// The text of the last user message (string content or content parts).
std::string last_user_text(const rapidjson::Value& messages) {
  std::string text;
  for (const auto& m : messages.GetArray()) {
    if (!m.IsObject() || !m.HasMember("role") || !m["role"].IsString()
        || std::string_view{m["role"].GetString()} != "user" || !m.HasMember("content"))
      continue;
    const auto& c = m["content"];
    text.clear();
    if (c.IsString()) {
      text.assign(c.GetString(), c.GetStringLength());
    } else if (c.IsArray()) {
      for (const auto& part : c.GetArray())
        if (part.IsObject() && part.HasMember("text") && part["text"].IsString())
          text.append(part["text"].GetString(), part["text"].GetStringLength());
    }
  }
  return text;
}

std::size_t text_bytes(const rapidjson::Value& messages) {
  std::size_t n = 0;
  for (const auto& m : messages.GetArray())
    if (m.IsObject() && m.HasMember("content") && m["content"].IsString())
      n += m["content"].GetStringLength();
  return n;
}

bool wants_stream(const rapidjson::Document& d) {
  return d.HasMember("stream") && d["stream"].IsBool() && d["stream"].GetBool();
}

std::string joined(const std::vector<std::string>& words) {
  std::string text;
  for (const auto& w : words)
    text += w;
  return text;
}

/// The reply as words (each a stream chunk), at most max_tokens of them.
std::vector<std::string> reply_words(const std::string& said, std::int64_t max_tokens) {
  std::string reply = "Hello from tollgate's built-in demo provider. You said: ";
  reply += said.size() > 200 ? said.substr(0, 200) + "..." : said;
  std::vector<std::string> words;
  std::size_t start = 0;
  while (start < reply.size() && static_cast<std::int64_t>(words.size()) < max_tokens) {
    auto end = reply.find(' ', start);
    if (end == std::string::npos)
      end = reply.size();
    else
      ++end;  // keep the space with its word
    words.push_back(reply.substr(start, end - start));
    start = end;
  }
  return words;
}

void usage(writer& w, std::int64_t prompt, std::int64_t completion, bool responses_api) {
  w.Key("usage");
  w.StartObject();
  w.Key(responses_api ? "input_tokens" : "prompt_tokens");
  w.Int64(prompt);
  w.Key(responses_api ? "output_tokens" : "completion_tokens");
  w.Int64(completion);
  w.Key("total_tokens");
  w.Int64(prompt + completion);
  w.EndObject();
}

answer chat(const rapidjson::Document& d) {
  answer a;
  if (!d.HasMember("messages") || !d["messages"].IsArray())
    return {400, error("messages must be an array"), {}};
  const std::string model = d.HasMember("model") && d["model"].IsString() ? d["model"].GetString()
                                                                          : "demo";
  std::int64_t max_tokens = 1024;
  for (const char* k : {"max_tokens", "max_completion_tokens"})
    if (d.HasMember(k) && d[k].IsInt64())
      max_tokens = d[k].GetInt64();
  const auto words = reply_words(last_user_text(d["messages"]), max_tokens);
  const auto prompt = core::llm::estimate_tokens(text_bytes(d["messages"])) / 2 + 1;
  const auto completion = static_cast<std::int64_t>(words.size());
  const auto id = next_id("chatcmpl-demo-");
  const bool stream = wants_stream(d);
  if (!stream) {
    const auto text = joined(words);
    rapidjson::StringBuffer b;
    writer w{b};
    w.StartObject();
    w.Key("id");
    str(w, id);
    w.Key("object");
    w.String("chat.completion");
    w.Key("created");
    w.Int64(0);
    w.Key("model");
    str(w, model);
    w.Key("choices");
    w.StartArray();
    w.StartObject();
    w.Key("index");
    w.Int(0);
    w.Key("message");
    w.StartObject();
    w.Key("role");
    w.String("assistant");
    w.Key("content");
    str(w, text);
    w.EndObject();
    w.Key("finish_reason");
    w.String("stop");
    w.EndObject();
    w.EndArray();
    usage(w, prompt, completion, false);
    w.EndObject();
    a.body = b.GetString();
    return a;
  }
  const bool include_usage = d.HasMember("stream_options") && d["stream_options"].IsObject()
                             && d["stream_options"].HasMember("include_usage")
                             && d["stream_options"]["include_usage"].IsBool()
                             && d["stream_options"]["include_usage"].GetBool();
  const auto frame = [&](const std::string* word, bool last, bool with_usage) {
    rapidjson::StringBuffer b;
    writer w{b};
    w.StartObject();
    w.Key("id");
    str(w, id);
    w.Key("object");
    w.String("chat.completion.chunk");
    w.Key("created");
    w.Int64(0);
    w.Key("model");
    str(w, model);
    w.Key("choices");
    w.StartArray();
    if (!with_usage) {
      w.StartObject();
      w.Key("index");
      w.Int(0);
      w.Key("delta");
      w.StartObject();
      if (word != nullptr) {
        w.Key("content");
        str(w, *word);
      }
      w.EndObject();
      w.Key("finish_reason");
      if (last)
        w.String("stop");
      else
        w.Null();
      w.EndObject();
    }
    w.EndArray();
    if (with_usage)
      usage(w, prompt, completion, false);
    w.EndObject();
    return "data: " + std::string{b.GetString()} + "\n\n";
  };
  for (const auto& word : words)
    a.chunks.push_back(frame(&word, false, false));
  a.chunks.push_back(frame(nullptr, true, false));
  if (include_usage)
    a.chunks.push_back(frame(nullptr, false, true));
  a.chunks.emplace_back("data: [DONE]\n\n");
  return a;
}

answer responses(const rapidjson::Document& d) {
  if (!d.HasMember("input"))
    return {400, error("input is required"), {}};
  std::string said;
  if (d["input"].IsString())
    said = d["input"].GetString();
  std::int64_t max_tokens = 1024;
  if (d.HasMember("max_output_tokens") && d["max_output_tokens"].IsInt64())
    max_tokens = d["max_output_tokens"].GetInt64();
  const auto words = reply_words(said, max_tokens);
  const auto text = joined(words);
  rapidjson::StringBuffer b;
  writer w{b};
  w.StartObject();
  w.Key("id");
  str(w, next_id("resp-demo-"));
  w.Key("object");
  w.String("response");
  w.Key("status");
  w.String("completed");
  w.Key("model");
  str(w, d.HasMember("model") && d["model"].IsString() ? d["model"].GetString() : "demo");
  w.Key("output");
  w.StartArray();
  w.StartObject();
  w.Key("type");
  w.String("message");
  w.Key("role");
  w.String("assistant");
  w.Key("content");
  w.StartArray();
  w.StartObject();
  w.Key("type");
  w.String("output_text");
  w.Key("text");
  str(w, text);
  w.EndObject();
  w.EndArray();
  w.EndObject();
  w.EndArray();
  w.Key("output_text");
  str(w, text);
  usage(w, core::llm::estimate_tokens(said.size()) / 2 + 1,
        static_cast<std::int64_t>(words.size()), true);
  w.EndObject();
  const bool stream = wants_stream(d);
  if (!stream)
    return {200, b.GetString(), {}};
  // The Responses API's stream: a delta event per word, then the whole
  // response (with its usage) in response.completed.
  answer a{200, {}, {}};
  for (const auto& word : words) {
    rapidjson::StringBuffer e;
    writer ew{e};
    ew.StartObject();
    ew.Key("type");
    ew.String("response.output_text.delta");
    ew.Key("delta");
    str(ew, word);
    ew.EndObject();
    a.chunks.push_back(std::string{"event: response.output_text.delta\ndata: "} + e.GetString()
                       + "\n\n");
  }
  a.chunks.push_back(std::string{"event: response.completed\ndata: "}
                     + R"({"type":"response.completed","response":)" + b.GetString() + "}\n\n");
  return a;
}

answer images(const rapidjson::Document& d) {
  if (!d.HasMember("prompt") || !d["prompt"].IsString())
    return {400, error("prompt is required"), {}};
  std::int64_t n = 1;
  if (d.HasMember("n") && d["n"].IsInt64())
    n = d["n"].GetInt64();
  rapidjson::StringBuffer b;
  writer w{b};
  w.StartObject();
  w.Key("created");
  w.Int64(0);
  w.Key("data");
  w.StartArray();
  for (std::int64_t i = 0; i < n && i < 10; ++i) {
    w.StartObject();
    w.Key("url");
    str(w, "https://demo.invalid/image-" + std::to_string(i) + ".png");
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return {200, b.GetString(), {}};
}

} // namespace

answer call(std::string_view path, std::string_view body) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError() || !d.IsObject())
    return {400, error("the body must be a JSON object"), {}};
  if (path == "/chat/completions")
    return chat(d);
  if (path == "/responses")
    return responses(d);
  if (path == "/images/generations")
    return images(d);
  return {404, error("the demo provider does not serve " + std::string{path}), {}};
}

} // namespace tollgate::http::llm::demo
