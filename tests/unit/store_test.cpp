#include "storage/store.hpp"

#include "support/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace tollgate;
using storage::column;
using storage::store;

TEST_CASE("store creates column families and the schema record", "[storage]") {
  test::temp_dir dir;
  auto db = store::open({dir.str("db"), false});
  CHECK(db->stored_schema_version() == storage::schema_version);
  CHECK(db->check().empty());
  CHECK(std::string{storage::column_name(column::audit)} == "audit");
}

TEST_CASE("writes are atomic batches and survive a reopen", "[storage]") {
  test::temp_dir dir;
  {
    auto db = store::open({dir.str("db"), false});
    std::vector<storage::write_op> ops{
      {static_cast<std::uint8_t>(column::users), "u:1", "alice", false},
      {static_cast<std::uint8_t>(column::keys), "k:1", "hash", false},
      {static_cast<std::uint8_t>(column::keys), "k:2", "other", false},
    };
    REQUIRE(db->apply(ops).empty());
    REQUIRE(db->apply({{static_cast<std::uint8_t>(column::keys), "k:2", "", true}}).empty());
  }
  auto db = store::open({dir.str("db"), false});
  std::string value;
  std::string error;
  REQUIRE(db->get(column::users, "u:1", value, error));
  CHECK(value == "alice");
  CHECK_FALSE(db->get(column::keys, "k:2", value, error));
  CHECK(error.empty());
  // Families are separate key spaces.
  CHECK_FALSE(db->get(column::users, "k:1", value, error));
  const auto rows = db->scan(column::keys, "k:", 10);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].first == "k:1");
}

TEST_CASE("a batch with an unknown family is refused whole", "[storage]") {
  test::temp_dir dir;
  auto db = store::open({dir.str("db"), false});
  const auto err = db->apply({{static_cast<std::uint8_t>(column::users), "u:1", "a", false},
                              {99, "x", "y", false}});
  CHECK_FALSE(err.empty());
  std::string value;
  std::string error;
  CHECK_FALSE(db->get(column::users, "u:1", value, error));
}

namespace {
struct counted_value final : storage::deferred_value {
  explicit counted_value(std::string text) : v(std::move(text)) {}
  std::string make() const override {
    ++made;
    if (v == "throw")
      throw std::runtime_error("no encoder for this");
    return v;
  }
  std::string v;
  mutable int made = 0;
};
} // namespace

TEST_CASE("a deferred value is made when its batch is written, and a failure refuses the batch",
          "[storage]") {
  test::temp_dir dir;
  auto db = store::open({dir.str("db"), false});
  auto later = std::make_shared<counted_value>(R"({"id":1})");
  storage::write_op op{static_cast<std::uint8_t>(column::ledger), "e/1", "ignored", false};
  op.deferred = later;
  CHECK(later->made == 0);  // queued, not encoded
  REQUIRE(db->apply({op}).empty());
  CHECK(later->made == 1);
  std::string value;
  std::string error;
  REQUIRE(db->get(column::ledger, "e/1", value, error));
  CHECK(value == R"({"id":1})");

  storage::write_op bad{static_cast<std::uint8_t>(column::ledger), "e/2", "", false};
  bad.deferred = std::make_shared<counted_value>("throw");
  const auto err = db->apply({{static_cast<std::uint8_t>(column::users), "u:9", "a", false}, bad});
  CHECK(err.find("no encoder for this") != std::string::npos);
  CHECK_FALSE(db->get(column::users, "u:9", value, error));  // the batch is refused whole
}

TEST_CASE("a store that cannot open says where and why", "[storage]") {
  test::temp_dir dir;
  std::ofstream{dir.str("file")} << "not a directory";
  try {
    store::open({dir.str("file"), false});
    FAIL("open should have thrown");
  } catch (const storage::open_error& e) {
    CHECK(std::string{e.what()}.find(dir.str("file")) != std::string::npos);
  }
}

TEST_CASE("a store from a newer schema is refused", "[storage]") {
  test::temp_dir dir;
  {
    auto db = store::open({dir.str("db"), false});
    REQUIRE(db->apply({{static_cast<std::uint8_t>(column::meta), "schema_version",
                        std::string("\0\0\0\x63", 4), false}})
              .empty());
  }
  CHECK_THROWS_WITH(store::open({dir.str("db"), false}),
                    Catch::Contains("schema version 99"));
}
