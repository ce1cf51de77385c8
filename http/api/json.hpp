#pragma once

// RapidJSON's Writer with the few conveniences route handlers need. Include
// only from .cpp files of http/api.

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

namespace tollgate::http::api {

class json_writer {
public:
  json_writer() : w_(buf_) {}

  rapidjson::Writer<rapidjson::StringBuffer>& operator*() { return w_; }
  rapidjson::Writer<rapidjson::StringBuffer>* operator->() { return &w_; }

  json_writer& key(std::string_view k) {
    w_.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    return *this;
  }
  json_writer& str(std::string_view v) {
    w_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    return *this;
  }
  json_writer& field(std::string_view k, std::string_view v) { return key(k).str(v); }
  json_writer& field(std::string_view k, const char* v) { return key(k).str(v); }
  json_writer& field(std::string_view k, std::int64_t v) {
    key(k);
    w_.Int64(v);
    return *this;
  }
  json_writer& field(std::string_view k, std::uint64_t v) {
    key(k);
    w_.Uint64(v);
    return *this;
  }
  json_writer& field(std::string_view k, double v) {
    key(k);
    w_.Double(v);
    return *this;
  }
  json_writer& null_field(std::string_view k) {
    key(k);
    w_.Null();
    return *this;
  }
  json_writer& string_list(std::string_view k, const std::vector<std::string>& v) {
    key(k);
    w_.StartArray();
    for (const auto& s : v)
      str(s);
    w_.EndArray();
    return *this;
  }
  json_writer& field(std::string_view k, bool v) {
    key(k);
    w_.Bool(v);
    return *this;
  }

  std::string take() { return {buf_.GetString(), buf_.GetSize()}; }

private:
  rapidjson::StringBuffer buf_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
};

} // namespace tollgate::http::api
