// A whole HTTP message, serialised by Beast, as one contiguous string. Written with one buffer,
// the socket write is a small Asio operation that the event loop's handler memory recycles;
// http::async_write of the message instead builds a serializer operation over Beast's buffer
// sequence that takes a fresh heap block of more than 1 KB per request or reply.
#pragma once
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/serializer.hpp>
#include <string>

namespace v4::net {

namespace detail {
// Appends what `sr` produces to `out` until done(sr) holds (or the serializer reports an error).
template <class Serializer, class Done>
void drain_serializer(Serializer& sr, std::string& out, Done done) {
  boost::beast::error_code ec;
  while (!ec && !done(sr)) {
    sr.next(ec, [&](boost::beast::error_code&, const auto& buffers) {
      size_t n = 0;
      for (auto b : boost::beast::buffers_range_ref(buffers)) {
        out.append(static_cast<const char*>(b.data()), b.size());
        n += b.size();
      }
      sr.consume(n);
    });
  }
}
}  // namespace detail

template <bool isRequest, class Body, class Fields>
void serialize_to(const boost::beast::http::message<isRequest, Body, Fields>& m, std::string& out) {
  out.clear();
  boost::beast::http::serializer<isRequest, Body, Fields> sr{m};
  detail::drain_serializer(sr, out, [](auto& s) { return s.is_done(); });
}

// The header alone (status or request line, fields, the blank line), as the serializer writes it:
// for a chunked stream whose body follows in later writes.
template <bool isRequest, class Body, class Fields>
void serialize_header_to(const boost::beast::http::message<isRequest, Body, Fields>& m, std::string& out) {
  out.clear();
  boost::beast::http::serializer<isRequest, Body, Fields> sr{m};
  sr.split(true);
  detail::drain_serializer(sr, out, [](auto& s) { return s.is_header_done(); });
}

}  // namespace v4::net
