#include "http/flow_window.hpp"

#include <catch2/catch.hpp>

using tollgate::http::flow_window;

TEST_CASE("a flow window pauses above high and lets go at low", "[http][flow]") {
  flow_window w{100, 40};
  w.add(100);
  CHECK_FALSE(w.pause_if_full());  // at high: still room
  w.add(1);
  CHECK(w.pause_if_full());
  CHECK(w.paused());

  bool resume = true;
  CHECK(w.take(50, resume) == 50);
  CHECK_FALSE(resume);  // 51 pending: above low
  CHECK(w.paused());
  CHECK(w.take(11, resume) == 11);
  CHECK(resume);  // 40 pending: at low
  CHECK_FALSE(w.paused());

  CHECK(w.take(1000, resume) == 40);  // never more than was pending
  CHECK(w.pending() == 0);
  CHECK_FALSE(resume);  // not paused: nothing to resume
}

TEST_CASE("a flow window's unpause lets a held producer go once", "[http][flow]") {
  flow_window w{10, 5};
  w.add(20);
  REQUIRE(w.pause_if_full());
  CHECK(w.unpause());
  CHECK_FALSE(w.unpause());
  CHECK(w.pending() == 20);
}
