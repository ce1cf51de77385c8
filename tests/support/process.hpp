#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace tollgate::test {

/// A child process with stdout and stderr captured together.
class child_process {
public:
  explicit child_process(const std::vector<std::string>& argv);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// Reads output until it contains `needle` or the timeout passes.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout);
  /// Sends a signal.
  void signal(int sig);
  /// Waits for exit; returns the exit code, or -1 on timeout (then kills it),
  /// or 128+signal when killed by a signal.
  int wait(std::chrono::milliseconds timeout);
  const std::string& output() const noexcept { return output_; }

private:
  void drain(int timeout_ms);
  int pid_ = -1;
  int fd_ = -1;
  int status_ = -1;
  std::string output_;
};

} // namespace tollgate::test
