// Opens an HTML file in real headless Chromium (Debian's `chromium`) and reports what happened:
// the DOM after scripts ran, uncaught script errors, and how many <svg> elements were laid out
// with a non-empty box. No DevTools protocol: a copy of the page gets a tiny prelude that records
// `error` events on <html data-script-errors>, and a postlude that counts rendered SVGs into
// <html data-svg-rendered>; `chromium --headless --dump-dom` prints the resulting DOM.
//
// Usage (GoogleTest):
//   auto r = v4::testing::open_in_chromium(path);
//   if (!r.available) GTEST_SKIP() << r.message;
//   EXPECT_TRUE(r.script_errors.empty()) << r.script_errors;
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace v4::testing {

struct ChromiumResult {
  bool available = false;     // chromium found and produced a DOM
  std::string message;        // why not available
  std::string dom;            // serialized DOM after load
  std::string script_errors;  // '|'-separated messages of uncaught errors (empty: none)
  int svg_rendered = -1;      // <svg> elements with a laid-out box of positive size
  int svg_total = -1;
};

inline std::string chromium_binary() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

inline std::string attr_of_html(const std::string& dom, const std::string& name) {
  auto h = dom.find("<html");
  if (h == std::string::npos) return {};
  auto end = dom.find('>', h);
  auto a = dom.find(name + "=\"", h);
  if (a == std::string::npos || a > end) return {};
  a += name.size() + 2;
  auto q = dom.find('"', a);
  return dom.substr(a, q - a);
}

inline ChromiumResult open_in_chromium(const std::string& html_path, int timeout_s = 60) {
  ChromiumResult r;
  std::string bin = chromium_binary();
  if (bin.empty()) {
    r.message = "chromium not installed (scripts/setup.sh installs Debian's chromium)";
    return r;
  }
  std::ifstream in(html_path, std::ios::binary);
  if (!in) {
    r.message = "cannot read " + html_path;
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string page = ss.str();
  const std::string pre =
      "<script>window.addEventListener('error',function(e){var d=document.documentElement;"
      "d.setAttribute('data-script-errors',(d.getAttribute('data-script-errors')||'')+(e.message||'error')+'|');});</script>";
  const std::string post =
      "<script>(function(){var s=document.querySelectorAll('svg'),n=0;for(var i=0;i<s.length;i++){var b=s[i].getBoundingClientRect();"
      "if(b.width>0&&b.height>0)n++;}var d=document.documentElement;d.setAttribute('data-svg-rendered',String(n));"
      "d.setAttribute('data-svg-total',String(s.length));})();</script>";
  auto head = page.find("<head>");
  if (head != std::string::npos) page.insert(head + 6, pre);
  else page = pre + page;
  auto body_end = page.rfind("</body>");
  if (body_end != std::string::npos) page.insert(body_end, post);
  else page += post;

  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("v4chromium-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  fs::create_directories(dir);
  fs::path copy = dir / "page.html";
  {
    std::ofstream out(copy, std::ios::binary);
    out << page;
  }
  std::string cmd = "timeout " + std::to_string(timeout_s) + " " + bin +
                    " --headless --disable-gpu --no-sandbox --no-first-run --disable-extensions --user-data-dir=" + (dir / "profile").string() +
                    " --virtual-time-budget=5000 --dump-dom file://" + copy.string() + " 2>" + (dir / "stderr.txt").string();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    r.message = "popen failed";
    fs::remove_all(dir);
    return r;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.dom.append(buf, n);
  int st = ::pclose(p);
  if (r.dom.find("<html") == std::string::npos) {
    std::ifstream e(dir / "stderr.txt");
    std::stringstream es;
    es << e.rdbuf();
    r.message = "chromium produced no DOM (status " + std::to_string(WEXITSTATUS(st)) + "): " + es.str().substr(0, 2000);
    fs::remove_all(dir);
    return r;
  }
  fs::remove_all(dir);
  r.available = true;
  r.script_errors = attr_of_html(r.dom, "data-script-errors");
  std::string sv = attr_of_html(r.dom, "data-svg-rendered"), st2 = attr_of_html(r.dom, "data-svg-total");
  if (!sv.empty()) r.svg_rendered = std::atoi(sv.c_str());
  if (!st2.empty()) r.svg_total = std::atoi(st2.c_str());
  return r;
}

// Text of the first element carrying data-key="KEY" in the DOM, or empty.
inline std::string text_of_key(const std::string& dom, const std::string& key) {
  auto a = dom.find("data-key=\"" + key + "\"");
  if (a == std::string::npos) return {};
  auto gt = dom.find('>', a);
  auto lt = dom.find('<', gt);
  return dom.substr(gt + 1, lt - gt - 1);
}

}  // namespace v4::testing
