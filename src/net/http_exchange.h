// Transport-neutral HTTP request / reply types that handlers are written against (v4host serve,
// the router). A handler is `void(const Request&, Reply&)`:
//  - answer at once: set status / headers / body on the Reply and return — the reply is sent when
//    the handler returns;
//  - answer later: `auto r = res.defer();` keep `r` (any thread may use it) and call r->send()
//    once; a deferred reply dropped without send() is answered 500;
//  - stream: `auto s = res.start_stream("text/event-stream");` sends the status line and headers
//    and switches to a chunked body written with s->write() from any thread, s->keep_alive() for
//    comment lines while idle, s->close() to end it.
// Either way res.on_disconnect(fn) is called once if the peer goes away (or a write times out)
// before the reply has completed, so the producer can stop work (free a sequence).
// Nothing here knows the transport; src/net/http_server.h implements it on Boost.Beast.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace v4::net {

// Header fields in arrival order; lookups are case-insensitive.
class Headers {
 public:
  struct Field {
    std::string name, value;
  };
  void add(std::string name, std::string value);
  void set(std::string name, std::string value);  // replaces every field of that name
  void erase(std::string_view name);
  std::string get(std::string_view name, std::string_view fallback = "") const;  // first match
  bool has(std::string_view name) const;
  const std::vector<Field>& fields() const { return fields_; }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<Field> fields_;
};

bool iequals(std::string_view a, std::string_view b);

struct Request {
  std::string method;        // "GET", "POST", ... as sent
  std::string target;        // the raw request target, e.g. "/v1/models/x?y=1"
  std::string path;          // percent-decoded path without the query
  std::string query_string;  // raw, without '?'
  std::vector<std::pair<std::string, std::string>> query;  // decoded key/value pairs
  std::map<std::string, std::string> params;  // path parameters bound by the route pattern ("{id}")
  Headers headers;
  std::string body;
  std::string remote;        // peer address "ip:port"
  std::string route;         // the pattern that matched (for metrics labels), "" if none
  int loop = 0;              // index of the external event loop (ServerOptions::loops) the connection runs on

  std::string header(std::string_view name) const { return headers.get(name); }  // "" when absent
  bool has_header(std::string_view name) const { return headers.has(name); }
  std::string param(const std::string& name) const;        // "" when absent
  std::string query_value(std::string_view name) const;    // first value, "" when absent
};

// The body of a streamed reply (chunked transfer encoding). All members are thread-safe.
class Stream {
 public:
  virtual ~Stream() = default;
  // Queues bytes (whole SSE events, say) for the client. Returns false once the stream is
  // closed — the peer went away, a write timed out, more than the buffer cap is waiting, or
  // close() was called — and the producer should stop.
  virtual bool write(std::string data) = 0;
  // The same, copying the bytes: a producer that reuses one buffer per write keeps its capacity
  // (write(std::move(buf)) hands it over, and the next piece allocates again).
  virtual bool append(std::string_view data) { return write(std::string(data)); }
  // Ends the body (terminal chunk); the connection may then serve its next request.
  virtual void close() = 0;
  virtual bool closed() const = 0;
  // Bytes queued but not yet written to the socket.
  virtual size_t buffered() const = 0;
  // Called (on an I/O thread) each time the queue has been written out; a producer that paces
  // itself on buffered() resumes here.
  virtual void on_drain(std::function<void()> fn) = 0;
  // While nothing else is written for `interval_s` seconds, writes `comment` (an SSE comment by
  // default) so proxies and clients keep the connection. interval_s <= 0 turns it off.
  virtual void keep_alive(double interval_s, std::string comment = ": keep-alive\n\n") = 0;
};

class Reply {
 public:
  virtual ~Reply() = default;

  // The response, built before it is sent (send() / handler return / start_stream()).
  int status = 200;
  Headers headers;
  std::string body;
  // Appended to this request's log line (token counts, finish reason, error text).
  std::string note;

  void set_header(std::string name, std::string value) { headers.set(std::move(name), std::move(value)); }
  void set_content(std::string content, std::string content_type) {
    body = std::move(content);
    headers.set("Content-Type", std::move(content_type));
  }

  virtual const Request& request() const = 0;
  // Sends status, headers and body. Once; later calls are ignored. Any thread.
  virtual void send() = 0;
  // Keeps the reply open after the handler returns; the handle may be used from any thread.
  virtual std::shared_ptr<Reply> defer() = 0;
  // Sends status and headers now (Content-Type: content_type) and returns the body stream.
  virtual std::shared_ptr<Stream> start_stream(std::string content_type = "text/event-stream") = 0;
  // The same, but status and headers go out with the first write (or close()), in one segment
  // with it — at once when that write is made on the connection's own event loop, with no pass
  // of the loop in between. For a producer that writes its first frames as one piece (the
  // router's first token); start_stream() instead waits one loop pass so that several writes
  // made right after it leave with the header.
  virtual std::shared_ptr<Stream> start_stream_on_write(std::string content_type = "text/event-stream") = 0;
  // `fn` runs once if the peer closes (or a write times out) before the reply completed —
  // at once if that has already happened. It runs on an I/O thread: keep it short.
  virtual void on_disconnect(std::function<void()> fn) = 0;
  virtual bool disconnected() const = 0;
  // True once send() was called or a stream was started.
  virtual bool answered() const = 0;
};

using Handler = std::function<void(const Request&, Reply&)>;

// "%2Fa+b" -> "/a b" (plus_as_space for query strings); invalid escapes are kept as they are.
std::string url_decode(std::string_view s, bool plus_as_space = false);
// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view q);
// The standard reason phrase ("Not Found"), "" if unknown.
const char* status_text(int status);

}  // namespace v4::net
