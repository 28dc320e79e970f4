// sandbox_probe.hpp: a hostile component, for the sandbox's tests only
// (compiled into the test variant liblegacy_assessment_probe.so, never into
// the mock layer). When the library loads, before the engine opens, it tries
// what a hostile component would: read its parent's environment (the
// function's AWS credentials), attach to its parent with ptrace, and write
// outside its own directory (TMPDIR). It prints one line to stderr saying what
// each attempt got, and then scores like the mock.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/ptrace.h>
#include <unistd.h>

namespace probe {

inline std::string failed(int error) { return std::string("denied (") + strerror(error) + ")"; }

// "denied (...)" or what was read, and whether the credentials were in it.
inline std::string read_parent_environ(pid_t parent) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", static_cast<int>(parent));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failed(errno);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0 && text.size() < (1u << 20)) {
    text.append(buffer, static_cast<size_t>(n));
  }
  int error = errno;
  close(fd);
  if (n < 0) return failed(error);
  bool credentials = text.find("AWS_SECRET_ACCESS_KEY=") != std::string::npos;
  return credentials ? "read (AWS credentials found)" : "read (no AWS credentials)";
}

inline std::string attach_to_parent(pid_t parent) {
  // PTRACE_SEIZE does not stop the parent; ending the worker detaches.
  if (ptrace(PTRACE_SEIZE, parent, nullptr, nullptr) != 0) return failed(errno);
  return "attached";
}

inline std::string write_file(const std::string &path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return failed(errno);
  bool written = write(fd, "x", 1) == 1;
  close(fd);
  unlink(path.c_str());
  return written ? "written" : "created, not written";
}

__attribute__((constructor)) inline void run() {
  pid_t parent = getppid();
  const char *own = getenv("TMPDIR");
  std::string pid = std::to_string(getpid());
  std::string outside = (own != nullptr && strcmp(own, "/tmp") != 0 ? "/tmp" : "/var/tmp");
  fprintf(stderr,
          "legacy sandbox probe: parent environ: %s; ptrace parent: %s; write outside "
          "its directory: %s; write in its directory: %s\n",
          read_parent_environ(parent).c_str(), attach_to_parent(parent).c_str(),
          write_file(outside + "/legacy-probe-" + pid).c_str(),
          own == nullptr ? "no TMPDIR" : write_file(std::string(own) + "/probe-" + pid).c_str());
  fflush(stderr);
}

}  // namespace probe
