#pragma once
// The agent's admin socket (SPEC §6): `<data_dir>/agent.sock`, a Unix stream
// socket that perfqctl uses for the verbs that change state or need the
// agent's own files (the DLQ). One JSON object per line each way, one
// request per connection (line_socket.hpp):
//
//   -> {"op":"dlq.list","limit":50,"all":false}
//   <- {"entries":[...]}                       or the SPEC error body
//                                                {statusCode,message,error}
//
// Access: SO_PEERCRED. The agent's own uid, root, and the configured
// admin_uids / admin_gids are admitted; anyone else is answered 403 and the
// refusal goes to the audit log. The socket file is 0666 so that every
// refusal is seen (and audited) rather than stopped silently by the file
// mode; the credentials check is the gate. The verbs are AdminOps'
// (admin_ops.hpp); the client end is admin_call (admin_client.hpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <vector>

#include "perfq/core/result.hpp"

namespace perfq::agent {

struct Peer {
  uint32_t uid = 0;
  uint32_t gid = 0;
  int32_t pid = 0;
};

class AdminServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const Peer& peer)>;
  using Refused = std::function<void(const Peer& peer)>;

  // Binds `path` (replacing a stale socket file) and starts the thread.
  [[nodiscard]] static Result<std::unique_ptr<AdminServer>> open(const std::string& path,
                                                                 std::vector<uint32_t> admin_uids,
                                                                 std::vector<uint32_t> admin_gids,
                                                                 Handler handler, Refused refused);
  ~AdminServer();  // stops the thread, removes the socket file
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  [[nodiscard]] bool admitted(const Peer& p) const noexcept;

 private:
  AdminServer() = default;
  void run();
  void serve(int fd);

  std::string path_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd
  std::vector<uint32_t> admin_uids_;
  std::vector<uint32_t> admin_gids_;
  Handler handler_;
  Refused refused_;
  std::thread thread_;
};

}  // namespace perfq::agent
