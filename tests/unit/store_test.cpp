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
