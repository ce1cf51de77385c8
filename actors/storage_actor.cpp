#include "actors/storage_actor.hpp"

#include "metrics/registry.hpp"

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <spdlog/spdlog.h>

namespace tollgate::actors {

namespace {

struct storage_state {
  std::shared_ptr<storage::store> db;
  storage_actor_config cfg;
  std::vector<storage::write_op> pending;
  std::vector<caf::typed_response_promise<write_ack>> waiting;
  bool tick_scheduled = false;
  storage_metrics metrics;
};

using storage_pointer = storage_actor::stateful_pointer<storage_state>;

void commit(storage_pointer self) {
  auto& st = self->state;
  st.tick_scheduled = false;
  if (st.pending.empty())
    return;
  auto error = st.db->apply(st.pending);
  st.metrics.committed(st.pending.size(), error.empty());
  if (!error.empty()) {
    spdlog::error("storage: group commit of {} writes failed: {}", st.pending.size(), error);
  }
  for (auto& rp : st.waiting)
    rp.deliver(write_ack{error});
  st.pending.clear();
  st.waiting.clear();
}

storage_actor::behavior_type storage_impl(storage_pointer self) {
  return {
    [=](write_atom, std::vector<storage::write_op>& ops) -> caf::result<write_ack> {
      auto& st = self->state;
      for (auto& op : ops)
        st.pending.push_back(std::move(op));
      auto rp = self->make_response_promise<write_ack>();
      st.waiting.push_back(rp);
      if (st.pending.size() >= st.cfg.max_batch) {
        commit(self);
      } else if (!st.tick_scheduled) {
        st.tick_scheduled = true;
        // The tick queues behind every write already in the mailbox, so a
        // burst of writes shares one commit without a timer.
        if (st.cfg.commit_delay.count() > 0)
          self->delayed_send(self, st.cfg.commit_delay, commit_atom::value);
        else
          self->send(self, commit_atom::value);
      }
      return rp;
    },
    [=](commit_atom) { commit(self); },
    [=](read_atom, std::uint8_t family, const std::string& key) -> read_result {
      // Read your writes: a read never overtakes a write queued before it.
      commit(self);
      read_result r;
      if (family >= storage::column_count) {
        r.error = "unknown column family";
        return r;
      }
      r.found = self->state.db->get(static_cast<storage::column>(family), key, r.value, r.error);
      return r;
    },
    [=](scan_atom, std::uint8_t family, const std::string& prefix,
        std::uint32_t limit) -> scan_result {
      commit(self);
      scan_result r;
      if (family < storage::column_count)
        r.rows = self->state.db->scan(static_cast<storage::column>(family), prefix, limit);
      return r;
    },
    [=](health_atom) -> storage_health {
      storage_health h;
      h.detail = self->state.db->check();
      h.ok = h.detail.empty();
      h.pending = self->state.pending.size();
      h.schema = self->state.db->stored_schema_version();
      return h;
    },
    [=](flush_atom) -> write_ack {
      commit(self);
      return write_ack{self->state.db->sync_wal()};
    },
  };
}

} // namespace

void storage_metrics::committed(std::size_t records, bool ok) const {
  commits->inc();
  writes->inc(records);
  batch->observe(static_cast<double>(records));
  if (!ok)
    failures->inc();
}

storage_metrics make_storage_metrics(metrics::registry& r) {
  storage_metrics m;
  m.commits = &r.counter_metric("tollgate_storage_commits_total",
                                "Group commits written to RocksDB.");
  m.writes = &r.counter_metric("tollgate_storage_writes_total",
                               "Record writes committed to RocksDB.");
  m.failures = &r.counter_metric("tollgate_storage_commit_failures_total",
                                 "Group commits that RocksDB refused.");
  m.batch = &r.histograms("tollgate_storage_batch_writes", "Writes per group commit.", {},
                          {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
               .with({});
  return m;
}

storage_actor spawn_storage_actor(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                  storage_actor_config cfg, const storage_metrics& metrics) {
  return sys.spawn<caf::detached>(
    [db = std::move(db), cfg, metrics](storage_pointer self) mutable -> storage_actor::behavior_type {
      self->state.db = std::move(db);
      self->state.cfg = cfg;
      self->state.metrics = metrics;
      return storage_impl(self);
    });
}

storage_actor spawn_storage_actor(caf::actor_system& sys, std::shared_ptr<storage::store> db,
                                  storage_actor_config cfg, metrics::registry& r) {
  return spawn_storage_actor(sys, std::move(db), cfg, make_storage_metrics(r));
}

} // namespace tollgate::actors
