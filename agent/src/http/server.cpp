#include "http/server.hpp"

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <limits>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

namespace perfq::agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
class Session;
}

struct HttpServer::Impl {
  // Declared so that sessions, destroyed with the io_context, still find
  // `connections` and `options`.
  HttpOptions options;
  Handler handler;
  // Sessions not evicted; at most max_connections once the accept that
  // counted one more has evicted or refused.
  std::atomic<std::size_t> connections{0};
  // Every session, oldest first, for eviction (guarded: a session's last
  // reference may drop on a handler thread).
  std::mutex sessions_mu;
  std::list<Session*> sessions;
  std::atomic<std::size_t> streams{0};
  std::atomic<bool> stopping{false};
  // Answers computed but not yet written: shutdown waits for them (bounded).
  std::mutex answers_mu;
  std::condition_variable answers_cv;
  std::size_t answers_pending = 0;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  asio::thread_pool pool;
  std::thread io_thread;
  std::string address;

  explicit Impl(HttpOptions o, Handler h)
      : options(std::move(o)), handler(std::move(h)), pool(std::max(1u, options.handler_threads)) {}
  ~Impl() { ioc.stop(); }
  void accept();
  void on_accept_error(const beast::error_code& ec);
  bool evict_oldest_idle();
};

namespace {

std::string error_json(int status, const std::string& error, const std::string& message) {
  // The SPEC error body, built by hand: the server layer has no JSON library.
  std::string m;
  for (char c : message) {
    if (c == '"' || c == '\\') m += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) m += c;
  }
  return "{\"statusCode\":" + std::to_string(status) + ",\"message\":\"" + m + "\",\"error\":\"" +
         error + "\"}";
}

// A malformed request's answer: Beast's parser names what is wrong.
bool answerable(const beast::error_code& ec) {
  // end_of_stream: the client left before sending anything; timeouts and
  // socket errors leave nobody to answer.
  return ec.category() == http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream;
}

// What Beast's parser lets through but HTTP/1.1 (RFC 9112) forbids; null
// when the request is well-formed.
const char* malformed(const http::request<http::string_body>& req) {
  if (req.version() != 10 && req.version() != 11) return "HTTP version must be 1.0 or 1.1";
  const auto hosts = req.count(http::field::host);
  if (hosts > 1 || (req.version() == 11 && hosts == 0)) {
    return "an HTTP/1.1 request has exactly one Host header";
  }
  if (hosts == 1) {
    // No whitespace in a host (a folded first header line lands here).
    for (char c : req[http::field::host]) {
      if (c == ' ' || c == '\t') return "bad Host header";
    }
  }
  if (req.count(http::field::transfer_encoding) != 0) {
    // RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty, and a
    // request whose last coding is not chunked has no length.
    if (req.version() == 10) return "Transfer-Encoding in an HTTP/1.0 request";
    if (!req.chunked()) return "Transfer-Encoding must end with chunked";
  }
  const std::string_view target(req.target().data(), req.target().size());
  if (target.empty() || (target.front() != '/' && target != "*")) {
    return "the request target must be a path";
  }
  return nullptr;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server)
      : stream_(std::move(socket)), server_(server), tick_(stream_.get_executor()) {
    server_.connections.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    const auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    std::lock_guard lock(server_.sessions_mu);
    at_ = server_.sessions.insert(server_.sessions.end(), this);
  }
  ~Session() {
    {
      std::lock_guard lock(server_.sessions_mu);
      server_.sessions.erase(at_);
    }
    if (streaming_) server_.streams.fetch_sub(1, std::memory_order_relaxed);
    if (!evicted_) server_.connections.fetch_sub(1, std::memory_order_relaxed);
  }

  void start() { read(); }

  // Io thread only (the accept handler, under sessions_mu). A connection
  // waiting for its request (idle between requests, or half-sent) or
  // lingering after its answer is closed now: its descriptor is free at
  // once, and its pending read ends (operation_aborted) without an answer.
  bool evict() {
    if (!idle_ || evicted_) return false;
    evicted_ = true;
    idle_ = false;
    server_.connections.fetch_sub(1, std::memory_order_relaxed);
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    return true;
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options.header_limit));
    parser_->body_limit(server_.options.body_limit);
    // The whole request must arrive within the timeout: a slow client is cut.
    stream_.expires_after(server_.options.request_timeout);
    idle_ = true;
    scanned_ = 0;
    read_head();
  }

  // Beast unfolds obs-fold (a header line continued on the next, RFC 9112
  // 5.2) before anyone sees it; it is refused here, on the raw bytes, before
  // Beast parses them. Reads until the buffer holds the header block, then
  // hands it to Beast; anything odd (a bare LF, too many bytes, a read
  // error) is handed over too, and Beast names it.
  void read_head() {
    const Head h = scan_head();
    if (h == Head::kFolded) {
      idle_ = false;
      bad_request("obs-fold (a header line continued on the next)");
      return;
    }
    if (h == Head::kReady) {
      http::async_read(
          stream_, buffer_, *parser_,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
      return;
    }
    stream_.async_read_some(buffer_.prepare(kHeadReadBytes),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->buffer_.commit(n);
                              if (ec) {
                                self->scanned_ = kHeadDone;  // Beast reads the error again
                              }
                              if (!self->evicted_) self->read_head();
                            });
  }

  enum class Head : uint8_t { kMore, kReady, kFolded };

  // Where the buffered bytes stand, scanning each byte once (scanned_).
  // Bounded by header_limit: past it Beast answers 431.
  Head scan_head() {
    if (scanned_ == kHeadDone) return Head::kReady;
    const auto* p = static_cast<const char*>(buffer_.data().data());
    const std::size_t n = buffer_.size();
    for (; scanned_ < n; ++scanned_) {
      if (scanned_ >= server_.options.header_limit) return Head::kReady;
      if (p[scanned_] != '\n') continue;
      if (scanned_ == 0 || p[scanned_ - 1] != '\r') return Head::kReady;  // bare LF
      if (scanned_ + 1 == n) return Head::kMore;  // the next line's first byte decides
      const char next = p[scanned_ + 1];
      if (next == ' ' || next == '\t') return Head::kFolded;
      if (next == '\r') return Head::kReady;  // the blank line: the header block is whole
    }
    return Head::kMore;
  }

  // A request that cannot be served as sent: 400, then the connection ends.
  void bad_request(const std::string& why) {
    write({400, error_json(400, "INVALID_REQUEST", "malformed HTTP request: " + why)}, false, 11);
  }

  void on_read(beast::error_code ec) {
    idle_ = false;
    if (evicted_) return;
    if (ec == http::error::body_limit) {
      write({413, error_json(413, "PAYLOAD_TOO_LARGE", "request body too large")}, false, 11);
      return;
    }
    if (ec == http::error::header_limit) {
      write({431, error_json(431, "HEADERS_TOO_LARGE", "request headers too large")}, false, 11);
      return;
    }
    if (ec) {
      // Closed, reset or timed out: the stream goes with us. A request
      // Beast could not parse is answered wherever an answer can be framed.
      if (answerable(ec)) bad_request(ec.message());
      return;
    }
    http::request<http::string_body> req = parser_->release();
    if (const char* why = malformed(req)) {
      bad_request(why);
      return;
    }
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    if (auto it = req.find(http::field::authorization); it != req.end()) {
      r.authorization = std::string(it->value());
    }
    if (auto it = req.find("Last-Event-ID"); it != req.end()) {
      r.last_event_id = std::string(it->value());
    }
    r.body = std::move(req.body());
    r.remote = remote_;
    const bool keep_alive = req.keep_alive() && !server_.stopping.load(std::memory_order_relaxed);
    const unsigned version = req.version();
    const std::string_view path = std::string_view(r.target).substr(0, r.target.find('?'));
    for (const std::string& p : server_.options.inline_paths) {
      if (path == p) {
        answer(server_.handler(r), keep_alive, version, /*counted=*/false);
        return;
      }
    }
    {
      std::lock_guard lock(server_.answers_mu);
      ++server_.answers_pending;
    }
    // The handler may block (a submit waiting for room, a review waiting for
    // its fdatasync): it runs on the pool, the answer comes back here.
    stream_.expires_never();
    asio::post(server_.pool, [self = shared_from_this(), r = std::move(r), keep_alive, version] {
      HttpResponse resp;
      try {
        resp = self->server_.handler(r);
      } catch (const std::exception&) {
        resp = {500, error_json(500, "INTERNAL", "request failed")};
      }
      asio::post(self->stream_.get_executor(),
                 [self, resp = std::move(resp), keep_alive, version]() mutable {
                   self->answer(std::move(resp), keep_alive, version, /*counted=*/true);
                 });
    });
  }

  void answer(HttpResponse r, bool keep_alive, unsigned version, bool counted) {
    if (r.stream) {
      stream(std::move(r), version, counted);
      return;
    }
    write(std::move(r), keep_alive, version, counted);
  }

  void write(HttpResponse r, bool keep_alive, unsigned version, bool counted = false) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), version);
    res->set(http::field::server, "perfq");
    if (!r.body.empty()) res->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res->set(k, v);
    res->body() = std::move(r.body);
    res->keep_alive(keep_alive);
    res->prepare_payload();
    res_ = res;
    stream_.expires_after(server_.options.request_timeout);
    http::async_write(
        stream_, *res_,
        [self = shared_from_this(), keep_alive, counted](beast::error_code ec, std::size_t) {
          if (counted) self->answered();
          if (ec) return;
          if (keep_alive && !self->server_.stopping.load(std::memory_order_relaxed)) {
            self->read();
            return;
          }
          self->linger();
        });
  }

  // Closing a socket with unread bytes makes the kernel reset the connection,
  // and the reset can destroy an answer still in flight (a 413 sent while the
  // client is still writing its body, say). So half-close, then read and
  // discard until the client closes, bounded by the request timeout.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(server_.options.request_timeout);
    idle_ = true;  // nothing more to do for this client: evictable
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (!ec) self->drain();
                            });
  }

  // A streamed answer (http.hpp). Its answer stays counted until the stream
  // ends, so shutdown waits for it to end cleanly (bounded).
  void stream(HttpResponse r, unsigned version, bool counted) {
    if (server_.streams.load(std::memory_order_relaxed) >= server_.options.max_streams) {
      HttpResponse busy{503, error_json(503, "SERVICE_UNAVAILABLE", "too many event streams")};
      busy.headers.emplace_back("Retry-After", "1");
      write(std::move(busy), /*keep_alive=*/false, version, counted);
      return;
    }
    server_.streams.fetch_add(1, std::memory_order_relaxed);
    streaming_ = true;
    stream_counted_ = counted;
    source_ = std::move(r.stream);
    // HTTP/1.0 has no chunks: there the body simply runs until the close.
    chunked_ = version >= 11;
    head_.emplace(static_cast<http::status>(r.status), version);
    head_->set(http::field::server, "perfq");
    head_->set(http::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) head_->set(k, v);
    head_->keep_alive(false);
    head_->chunked(chunked_);
    head_sr_.emplace(*head_);
    stream_.expires_after(server_.options.request_timeout);
    http::async_write_header(stream_, *head_sr_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) {
                               if (ec) {
                                 self->end_stream();
                                 return;
                               }
                               self->watch_client();
                               self->pump();
                             });
  }

  // The client has nothing more to say; a read that ends means it left (or
  // the socket closed), and the stream ends with it instead of writing into
  // a dead connection until the next keep-alive fails.
  void watch_client() {
    // Only the read's timer: a write in flight keeps its own.
    stream_.expires_never();
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (!ec) {
                                self->watch_client();
                                return;
                              }
                              self->end_stream();
                            });
  }

  // One poll of the source, and its output written. The next poll waits for
  // the write: a client that reads slowly is polled less and its feed falls
  // behind (and says so) instead of buffering without bound here.
  void pump() {
    if (stream_ended_) return;
    if (server_.stopping.load(std::memory_order_relaxed)) {
      finish_stream();
      return;
    }
    out_.clear();
    try {
      source_(out_);
    } catch (const std::exception&) {
      end_stream();
      return;
    }
    if (out_.empty()) {
      schedule();
      return;
    }
    // A write not read within the timeout closes the connection.
    stream_.expires_after(server_.options.request_timeout);
    auto done = [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->end_stream();
        return;
      }
      self->schedule();
    };
    if (chunked_) {
      asio::async_write(stream_, http::make_chunk(asio::buffer(out_)), std::move(done));
    } else {
      asio::async_write(stream_, asio::buffer(out_), std::move(done));
    }
  }

  void schedule() {
    tick_.expires_after(server_.options.stream_poll_interval);
    tick_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->pump();
    });
  }

  // The server stops: the last chunk tells the client the stream ended on
  // purpose.
  void finish_stream() {
    if (!chunked_) {
      end_stream();
      return;
    }
    stream_.expires_after(server_.options.request_timeout);
    asio::async_write(
        stream_, http::make_chunk_last(),
        [self = shared_from_this()](beast::error_code, std::size_t) { self->end_stream(); });
  }

  // Idempotent: the watch read, a failed write and the stop may all end it.
  void end_stream() {
    if (stream_ended_) return;
    stream_ended_ = true;
    tick_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    if (stream_counted_) answered();
  }

  void answered() {
    {
      std::lock_guard lock(server_.answers_mu);
      --server_.answers_pending;
    }
    server_.answers_cv.notify_all();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> res_;
  std::string remote_;
  std::array<char, 4096> discard_;
  // A streamed answer's state; used on the connection's strand only.
  asio::steady_timer tick_;
  HttpStreamSource source_;
  std::optional<http::response<http::empty_body>> head_;
  std::optional<http::response_serializer<http::empty_body>> head_sr_;
  std::string out_;
  // Eviction state, io thread only: idle_ while waiting for a request or
  // lingering; evicted_ once closed by evict() (no longer counted).
  std::list<Session*>::iterator at_;  // in server_.sessions
  // Header bytes already scanned for obs-fold (read_head); kHeadDone: none
  // left to scan, Beast takes over.
  std::size_t scanned_ = 0;
  static constexpr std::size_t kHeadDone = std::numeric_limits<std::size_t>::max();
  static constexpr std::size_t kHeadReadBytes = 4096;
  bool idle_ = false;
  bool evicted_ = false;
  bool streaming_ = false;  // counted in server_.streams
  bool stream_counted_ = false;
  bool chunked_ = false;
  bool stream_ended_ = false;
};

}  // namespace

// Over the cap, a new connection first takes the place of the oldest one
// that is only waiting (idle between requests, half-sent, or lingering after
// its answer): a flood of idle sockets cannot lock the probes out, and the
// descriptors in use stay bounded by max_connections. When every connection
// is busy (a handler or a stream), the new one is refused at once: a fixed
// 503, written without waiting, and closed.
void HttpServer::Impl::accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      on_accept_error(ec);
      return;
    }
    if (connections.load(std::memory_order_relaxed) >= options.max_connections &&
        !evict_oldest_idle()) {
      static const std::string kBusy = [] {
        const std::string body = error_json(503, "SERVICE_UNAVAILABLE", "too many connections");
        return "HTTP/1.1 503 Service Unavailable\r\nServer: perfq\r\nContent-Type: "
               "application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
      }();
      (void)::send(socket.native_handle(), kBusy.data(), kBusy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
    accept();
  });
}

// Out of descriptors (EMFILE, ENFILE) or kernel memory: free one by evicting
// the oldest waiting connection, and stop polling the listener for a short
// bound instead of spinning on a queue of connections that cannot be taken.
void HttpServer::Impl::on_accept_error(const beast::error_code& ec) {
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) (void)evict_oldest_idle();
  accept_retry.expires_after(std::chrono::milliseconds(100));
  accept_retry.async_wait([this](beast::error_code wec) {
    if (!wec) accept();
  });
}

// Io thread only. Bounded by the sessions (at most max_connections and the
// few evicted ones whose handlers have not yet run).
bool HttpServer::Impl::evict_oldest_idle() {
  std::lock_guard lock(sessions_mu);
  for (Session* s : sessions) {
    if (s->evict()) return true;
  }
  return false;
}

namespace {

// "HOST:PORT" with an IP address (v6 in brackets) and a port 0..65535.
Result<tcp::endpoint> parse_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return {Errc::kInvalidRequest, "http address must be HOST:PORT: " + listen};
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const std::string port_text = listen.substr(colon + 1);
  const auto [p, pec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (pec != std::errc() || p != port_text.data() + port_text.size() || port > 65535) {
    return {Errc::kInvalidRequest, "http port must be 0..65535: " + listen};
  }
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) return {Errc::kInvalidRequest, "http host must be an IP address: " + listen};
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

}  // namespace

Result<void> check_listen_address(const std::string& listen) {
  auto ep = parse_listen(listen);
  if (!ep) return ep.error();
  return {};
}

Result<std::unique_ptr<HttpServer>> HttpServer::open(HttpOptions options, Handler handler) {
  const std::string listen = options.listen;
  auto parsed = parse_listen(listen);
  if (!parsed) return parsed.error();
  const tcp::endpoint ep = *parsed;
  beast::error_code ec;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return {Errc::kInternal, "http listen on " + listen + ": " + ec.message()};
  const auto bound = impl->acceptor.local_endpoint();
  impl->address = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                           : bound.address().to_string()) +
                  ":" + std::to_string(bound.port());
  impl->accept();
  Impl* raw = impl.get();
  impl->io_thread = std::thread([raw] { raw->ioc.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  // Handlers finish first (they post their answers to the io thread), then
  // the io thread stops and every session is destroyed with the context.
  impl_->stopping.store(true, std::memory_order_relaxed);
  asio::post(impl_->ioc, [i = impl_.get()] {
    beast::error_code ignored;
    i->acceptor.close(ignored);
    i->accept_retry.cancel();
  });
  impl_->pool.join();
  {
    // Answers the handlers produced still go out, within the write timeout.
    std::unique_lock lock(impl_->answers_mu);
    impl_->answers_cv.wait_for(lock, impl_->options.request_timeout,
                               [&] { return impl_->answers_pending == 0; });
  }
  impl_->ioc.stop();
  if (impl_->io_thread.joinable()) impl_->io_thread.join();
}

const std::string& HttpServer::address() const noexcept {
  return impl_->address;
}

}  // namespace perfq::agent
