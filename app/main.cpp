// tollgate: an API gateway that meters every API key.

#include "app/config_loader.hpp"
#include "app/gateway.hpp"
#include "storage/store.hpp"

#include <tollgate/version.hpp>

#include <CLI/CLI.hpp>
#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <iostream>
#include <optional>
#include <string>

#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

constexpr int exit_bad_config = 2;
constexpr int exit_start_failed = 1;

void setup_logging(const std::string& level) {
  // Asynchronous so that an I/O thread never waits for the terminal.
  spdlog::init_thread_pool(16384, 1);
  auto logger = spdlog::create_async<spdlog::sinks::stdout_sink_mt>("tollgate");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

/// glibc keeps 7 freed chunks per size in each thread's cache; past that,
/// free and malloc take the arena's slower paths. With 32 calls in flight
/// the gateway holds far more of each size than that: at 32 connections
/// the I/O thread ran about 5% more instructions per call with the default
/// (BENCHMARKS.md, eleventh session, "A larger malloc cache"). The size is
/// a tunable glibc reads only at start: when the environment does not set
/// it, the gateway sets it and runs itself again (the same process and
/// arguments). An operator's own glibc.malloc.tcache_count (7 is glibc's
/// default) is kept as it is. Not done (and glibc's default kept):
/// - in a secure-mode process (setuid, file capabilities), where glibc
///   drops malloc tunables, so the second run would not see its own;
/// - when /proc/self/exe is not the program argv[0] names (started through
///   the dynamic loader, or under valgrind): running it would not run the
///   gateway as it was started;
/// - a second time: the first run marks the environment for the second.
void tune_allocator(char** argv) {
  constexpr const char* name = "GLIBC_TUNABLES";
  constexpr const char* mark = "TOLLGATE_TUNED_EXEC";
  constexpr const char* tcache = "glibc.malloc.tcache_count=64";
  if (std::getenv(mark) != nullptr) {
    ::unsetenv(mark);  // this is the second run
    return;
  }
  std::optional<std::string> set;
  if (const char* v = std::getenv(name))
    set = v;
  if (set && set->find("glibc.malloc.tcache_count=") != std::string::npos)
    return;
  if (::getauxval(AT_SECURE) != 0 || argv[0] == nullptr)
    return;
  // The program argv[0] names, found as the shell found it.
  std::string program = argv[0];
  if (program.find('/') == std::string::npos) {
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "";
    program.clear();
    for (std::size_t at = 0; at <= dirs.size();) {
      const auto end = std::min(dirs.find(':', at), dirs.size());
      const auto candidate = (end > at ? dirs.substr(at, end - at) : ".") + "/" + argv[0];
      if (::access(candidate.c_str(), X_OK) == 0) {
        program = candidate;
        break;
      }
      at = end + 1;
    }
  }
  struct stat self {};
  struct stat named {};
  if (program.empty() || ::stat("/proc/self/exe", &self) != 0
      || ::stat(program.c_str(), &named) != 0 || self.st_dev != named.st_dev
      || self.st_ino != named.st_ino)
    return;
  const std::string value = set && !set->empty() ? *set + ":" + tcache : std::string{tcache};
  if (::setenv(name, value.c_str(), 1) == 0 && ::setenv(mark, "1", 1) == 0)
    ::execv("/proc/self/exe", argv);
  // Not run again (no memory for the environment, or the exec failed): go
  // on with glibc's default, and the environment as it was.
  ::unsetenv(mark);
  if (set)
    ::setenv(name, set->c_str(), 1);
  else
    ::unsetenv(name);
}

} // namespace

int main(int argc, char** argv) {
  using namespace tollgate;
  tune_allocator(argv);
  CLI::App cli{"tollgate: an API gateway that meters every API key"};
  std::string config_path;
  std::string listen;
  std::string data_dir;
  std::string log_level;
  bool show_version = false;
  cli.add_option("--config", config_path, "TOML configuration file");
  cli.add_option("--listen", listen, "HOST:PORT to listen on (overrides server.listen)");
  cli.add_option("--data-dir", data_dir, "RocksDB data directory (overrides storage.data_dir)");
  cli.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error, critical or off (overrides log.level)");
  cli.add_flag("--version", show_version, "Print the version and exit");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cli.exit(e);
  } catch (const CLI::ParseError& e) {
    cli.exit(e);
    return exit_bad_config;
  }
  if (show_version) {
    std::cout << "tollgate " << core::version << '\n';
    return 0;
  }

  core::config cfg;
  try {
    if (!config_path.empty())
      cfg = app::load_config(config_path);
    if (!listen.empty()) {
      auto err = app::parse_listen(listen, cfg.server);
      if (!err.empty())
        throw app::config_error("--listen: " + err);
    }
    if (!data_dir.empty())
      cfg.storage.data_dir = data_dir;
    if (!log_level.empty()) {
      if (!app::valid_log_level(log_level))
        throw app::config_error("--log-level: must be one of trace, debug, info, warn, error, "
                                "critical, off, got \"" + log_level + "\"");
      cfg.log.level = log_level;
    }
  } catch (const app::config_error& e) {
    std::cerr << "tollgate: configuration error: " << e.what() << '\n';
    return exit_bad_config;
  }

  // Block the shutdown signals before any thread starts, so every thread
  // inherits the mask and only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  setup_logging(cfg.log.level);
  if (const char* t = std::getenv("GLIBC_TUNABLES"))
    spdlog::info("glibc tunables: {}", t);
  int code = 0;
  {
    app::gateway gw{cfg};
    bool started = false;
    try {
      gw.start();
      started = true;
    } catch (const app::config_error& e) {
      std::cerr << "tollgate: configuration error: " << e.what() << '\n';
      code = exit_bad_config;
    } catch (const storage::open_error& e) {
      spdlog::critical("cannot start: {}", e.what());
      std::cerr << "tollgate: cannot open the store: " << e.what() << '\n';
      code = exit_start_failed;
    } catch (const std::exception& e) {
      spdlog::critical("cannot start: {}", e.what());
      std::cerr << "tollgate: cannot start: " << e.what() << '\n';
      code = exit_start_failed;
    }
    if (started) {
      int sig = 0;
      sigwait(&signals, &sig);
      spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    if (!gw.shutdown() && code == 0)
      code = 1;
  }
  spdlog::shutdown();
  return code;
}
