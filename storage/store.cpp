#include "storage/store.hpp"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <filesystem>

namespace tollgate::storage {

namespace {

constexpr const char* names[column_count] = {"meta",   "users",    "keys", "usage",
                                              "ledger", "sessions", "audit"};
constexpr const char* schema_key = "schema_version";

std::string encode_u32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i)
    s[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * (3 - i))) & 0xFF);
  return s;
}

std::uint32_t decode_u32(const std::string& s) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4 && i < s.size(); ++i)
    v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

} // namespace

const char* column_name(column c) noexcept {
  return names[static_cast<std::size_t>(c)];
}

struct store::impl {
  std::string dir;
  rocksdb::WriteOptions write_options;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // [0] default, then names[]

  rocksdb::ColumnFamilyHandle* cf(std::uint8_t c) const { return handles.at(c + 1U); }

  ~impl() {
    if (db) {
      for (auto* h : handles)
        db->DestroyColumnFamilyHandle(h);
      db->Close();
    }
  }
};

store::store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
store::~store() = default;

std::unique_ptr<store> store::open(const options& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(opts.dir, ec);
  if (ec)
    throw open_error("cannot create data directory '" + opts.dir + "': " + ec.message());

  rocksdb::DBOptions db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_open_files = 256;
  db_opts.keep_log_file_num = 4;
  db_opts.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;

  // A user's balance and the ledger sequence are rewritten on every call.
  // Updated in place in the memtable, they keep it small instead of adding
  // a version per write (BENCHMARKS.md). In-place updates give up snapshot
  // consistency, and RocksDB writes a value's new length before it takes
  // the key's lock, so a concurrent read of the same key could see a cut
  // value. Here the balances and sequences are read only at start-up, and
  // the only iterator at run time reads ledger entries, which are written
  // once. A key's counters (usage) are read whenever a key actor starts,
  // maybe while its last write is still pending: they keep new versions.
  // RocksDB then hands out no snapshots for the whole store; nothing here
  // takes one.
  db_opts.allow_concurrent_memtable_write = false;  // required by in-place updates
  // A family that rarely flushes (balances updated in place, users, keys)
  // holds every log file since its last flush. Past this size RocksDB
  // flushes it, which bounds the log replayed at start-up (the default
  // here would be about 4 GiB).
  db_opts.max_total_wal_size = 256ULL << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions{});
  for (std::size_t i = 0; i < column_count; ++i) {
    const auto c = static_cast<column>(i);
    rocksdb::ColumnFamilyOptions cf_opts;
    cf_opts.inplace_update_support = c == column::meta || c == column::ledger;
    descriptors.emplace_back(names[i], cf_opts);
  }

  auto p = std::make_unique<impl>();
  p->dir = opts.dir;
  p->write_options.sync = opts.sync_writes;
  p->write_options.disableWAL = false;
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(db_opts, opts.dir, descriptors, &p->handles, &raw);
  if (!st.ok())
    throw open_error("cannot open RocksDB store in '" + opts.dir + "': " + st.ToString());
  p->db.reset(raw);

  std::string value;
  st = p->db->Get(rocksdb::ReadOptions{}, p->cf(0), schema_key, &value);
  if (st.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    st = p->db->Put(wo, p->cf(0), schema_key, encode_u32(schema_version));
    if (!st.ok())
      throw open_error("cannot write schema version in '" + opts.dir + "': " + st.ToString());
  } else if (!st.ok()) {
    throw open_error("cannot read schema version in '" + opts.dir + "': " + st.ToString());
  } else if (decode_u32(value) > schema_version) {
    throw open_error("store in '" + opts.dir + "' has schema version "
                     + std::to_string(decode_u32(value)) + ", this build understands up to "
                     + std::to_string(schema_version));
  }
  return std::unique_ptr<store>(new store(std::move(p)));
}

std::string store::apply(const std::vector<write_op>& ops) {
  rocksdb::WriteBatch batch;
  std::string made;
  for (const auto& op : ops) {
    if (op.family >= column_count)
      return "unknown column family " + std::to_string(op.family);
    auto* cf = impl_->cf(op.family);
    if (op.deferred && !op.erase) {
      try {
        made = op.deferred->make();  // Put copies it into the batch
      } catch (const std::exception& e) {
        return std::string{"a value could not be encoded: "} + e.what();
      } catch (...) {
        return "a value could not be encoded";
      }
    }
    auto st = op.erase      ? batch.Delete(cf, op.key)
              : op.deferred ? batch.Put(cf, op.key, made)
                            : batch.Put(cf, op.key, op.value);
    if (!st.ok())
      return st.ToString();
  }
  auto st = impl_->db->Write(impl_->write_options, &batch);
  return st.ok() ? std::string{} : st.ToString();
}

bool store::get(column c, std::string_view key, std::string& value, std::string& error) {
  auto st = impl_->db->Get(rocksdb::ReadOptions{}, impl_->cf(static_cast<std::uint8_t>(c)),
                           rocksdb::Slice{key.data(), key.size()}, &value);
  if (st.ok())
    return true;
  if (!st.IsNotFound())
    error = st.ToString();
  return false;
}

std::vector<std::pair<std::string, std::string>> store::scan(column c, std::string_view prefix,
                                                             std::size_t limit) {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it{
    impl_->db->NewIterator(rocksdb::ReadOptions{}, impl_->cf(static_cast<std::uint8_t>(c)))};
  const rocksdb::Slice p{prefix.data(), prefix.size()};
  for (it->Seek(p); it->Valid() && it->key().starts_with(p) && out.size() < limit; it->Next())
    out.emplace_back(it->key().ToString(), it->value().ToString());
  return out;
}

std::string store::check() {
  std::string value;
  auto st = impl_->db->Get(rocksdb::ReadOptions{}, impl_->cf(0), schema_key, &value);
  if (!st.ok())
    return st.ToString();
  return {};
}

std::string store::sync_wal() {
  auto st = impl_->db->FlushWAL(true);
  return st.ok() ? std::string{} : st.ToString();
}

std::uint32_t store::stored_schema_version() {
  std::string value;
  std::string error;
  return get(column::meta, schema_key, value, error) ? decode_u32(value) : 0;
}

const std::string& store::dir() const noexcept {
  return impl_->dir;
}

} // namespace tollgate::storage
