#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::storage {

/// Column families, one per kind of record. The numeric values are stable:
/// they travel in messages and must not be reordered.
enum class column : std::uint8_t {
  meta = 0,   ///< schema version and other store-wide records
  users,
  keys,
  usage,
  ledger,
  sessions,
  audit,
};

inline constexpr std::size_t column_count = 7;

/// Name of a column family as RocksDB knows it.
const char* column_name(column c) noexcept;

/// The schema version this build writes and understands.
inline constexpr std::uint32_t schema_version = 1;

/// A value encoded when its batch is written rather than when it is queued:
/// under load the write queue's writer thread commits, so the encoding
/// leaves the I/O thread (a ledger entry's JSON). make() must read only
/// what the object holds; it may run on any thread, once per commit.
struct deferred_value {
  virtual ~deferred_value() = default;
  virtual std::string make() const = 0;
};

/// One write in a batch: a put, or a delete when `erase` is set.
struct write_op {
  write_op() = default;
  write_op(std::uint8_t f, std::string k, std::string v, bool e = false)
    : family(f), key(std::move(k)), value(std::move(v)), erase(e) {}

  std::uint8_t family = 0;  ///< a `column` value
  std::string key;
  std::string value;
  bool erase = false;
  /// When set, the put writes deferred->make() and `value` is unused. It
  /// stays in the process: inspect() leaves it out, as no write_op is ever
  /// serialised (the storage actor is local).
  std::shared_ptr<const deferred_value> deferred;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, write_op& x) {
  return f(x.family, x.key, x.value, x.erase);
}

/// Thrown when the store cannot be opened; the message says why and where.
class open_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// RocksDB behind a small, blocking interface. Only the detached storage
/// actor calls it on the request path; RocksDB headers stay in store.cpp.
class store {
public:
  struct options {
    std::string dir;
    bool sync_writes = false;
  };

  /// Opens or creates the store, creating missing column families and the
  /// schema-version record. Throws open_error.
  static std::unique_ptr<store> open(const options& opts);

  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Applies all ops atomically in one WriteBatch (WAL on). Returns an empty
  /// string on success, otherwise RocksDB's message.
  std::string apply(const std::vector<write_op>& ops);

  /// Reads one value. Returns true when found; `error` is set on failure.
  bool get(column c, std::string_view key, std::string& value, std::string& error);

  /// Keys and values of a column whose keys start with `prefix`, in key order.
  std::vector<std::pair<std::string, std::string>> scan(column c, std::string_view prefix,
                                                        std::size_t limit);

  /// Cheap liveness probe: reads the schema record. Empty string when ok.
  std::string check();

  /// Flushes and fsyncs the WAL (used at shutdown).
  std::string sync_wal();

  /// Stored schema version.
  std::uint32_t stored_schema_version();

  const std::string& dir() const noexcept;

private:
  struct impl;
  explicit store(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace tollgate::storage
