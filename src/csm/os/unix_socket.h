// Unix SOCK_SEQPACKET sockets: message boundaries, file-descriptor passing and peer
// credentials. The client↔csmd protocol runs over these (docs/protocol.md).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "csm/os/fd.h"
#include "csm/status.h"

namespace csm::os {

// Largest message csm sends (the socket buffers are raised to hold it).
inline constexpr size_t kMaxMessageBytes = 1 << 20;
// At most this many descriptors ride on one message (the kernel allows 253).
inline constexpr size_t kMaxFdsPerMessage = 250;

struct PeerCredentials {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

// Creates the socket's directory (mode 0700) if needed, removes a stale socket file,
// binds and listens; the socket file gets mode 0600.
Result<UniqueFd> ListenUnix(const std::string& path);
Result<UniqueFd> ConnectUnix(const std::string& path);
Result<UniqueFd> AcceptUnix(int listen_fd);
Result<PeerCredentials> GetPeerCredentials(int fd);

// Sends one message with `fds` attached (borrowed; they stay open here). On a
// non-blocking socket whose peer is not reading, waits up to timeout_ms for room
// (0: fail at once), then Timeout.
Status SendMessage(int fd, const std::string& bytes, const std::vector<int>& fds = {},
                   int timeout_ms = 5000);

struct Message {
  std::string bytes;
  std::vector<UniqueFd> fds;
};
// Receives one message. A closed peer is Unavailable. timeout_ms < 0 waits forever.
Result<Message> ReceiveMessage(int fd, int timeout_ms = -1);

}  // namespace csm::os
