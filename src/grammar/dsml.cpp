// DSML tool-call block grammar (spec §6.4) with arguments constrained by each tool's schema.
#include <set>

#include "core/error.h"
#include "grammar/ir.h"

namespace v4 {

namespace {

using ojson = nlohmann::ordered_json;
using namespace gir;

const std::string kMarker = "\xEF\xBD\x9C" "DSML" "\xEF\xBD\x9C";  // ｜DSML｜
const std::string kParamEnd = "</" + kMarker + "parameter>";

bool contains_marker(const std::string& s) { return s.find(kMarker) != std::string::npos; }

// Plain {type: "string"} (annotations allowed): raw text, string="true".
bool is_plain_string(const ojson& s) {
  if (!s.is_object()) return false;
  static const std::set<std::string> ok = {"type", "description", "title", "default", "examples", "format",
                                           "$comment", "deprecated", "readOnly", "writeOnly", "pattern",
                                           "contentMediaType", "contentEncoding"};
  for (auto it = s.begin(); it != s.end(); ++it)
    if (!ok.count(it.key())) return false;
  if (!s.contains("type")) return false;
  const auto& t = s["type"];
  return (t.is_string() && t.get<std::string>() == "string") ||
         (t.is_array() && t.size() == 1 && t[0] == "string");
}

// String enum/const whose values can be written raw (string="true").
bool raw_string_choices(const ojson& s, std::vector<std::string>& out) {
  if (!s.is_object()) return false;
  if (s.contains("type") && !(s["type"].is_string() && s["type"].get<std::string>() == "string")) return false;
  std::vector<ojson> vals;
  if (s.contains("const")) vals.push_back(s["const"]);
  else if (s.contains("enum") && s["enum"].is_array()) vals.assign(s["enum"].begin(), s["enum"].end());
  else return false;
  if (vals.empty()) return false;
  for (const auto& v : vals) {
    if (!v.is_string()) return false;
    std::string t = v.get<std::string>();
    if (contains_marker(t) || t.find('\0') != std::string::npos) return false;
    out.push_back(std::move(t));
  }
  return true;
}

void check_name(const std::string& what, const std::string& name) {
  if (name.empty()) throw InputError(what + " name is empty");
  if (name.find('"') != std::string::npos || contains_marker(name) || name.find('\n') != std::string::npos)
    throw InputError(what + " name '" + name + "' contains a quote, newline or the DSML marker");
}

GrammarPtr compile_dsml(const ojson& tools, const std::string& forced_name, bool parallel,
                        const std::vector<FreeformGrammar>& freeform) {
  if (!tools.is_array() || tools.empty()) throw InputError("tools must be a non-empty array");
  RuleSet rs;
  const uint32_t root = rs.add_rule("tool_calls");
  JsonBuilder jb(rs);
  jb.dsml_safe = true;
  jb.lenient = true;
  // Whether the lenient builder can take `schema` at all (tried on a scratch rule set, so a
  // failure leaves no half-built rules behind); if not, the value is any JSON.
  auto buildable = [](const ojson& schema, const ojson& root) {
    RuleSet scratch;
    JsonBuilder t(scratch);
    t.dsml_safe = true;
    t.lenient = true;
    try {
      const uint32_t r = scratch.add_rule("probe");
      scratch.set_body(r, t.schema(schema, root));
      compile(scratch, r);
      return true;
    } catch (const InputError&) {
      return false;
    }
  };
  NodeP raw_text;
  std::vector<NodeP> invokes;
  std::set<std::string> names;
  for (const auto& tool : tools) {
    if (!tool.is_object()) throw InputError("each tool must be an object");
    if (tool.contains("type") && tool["type"] != "function")
      throw InputError("unsupported tool type " + tool["type"].dump() + " (only \"function\")");
    const ojson& fn = tool.contains("function") ? tool["function"] : tool;
    if (!fn.is_object() || !fn.contains("name") || !fn["name"].is_string())
      throw InputError("each tool needs function.name");
    const std::string name = fn["name"].get<std::string>();
    check_name("tool", name);
    if (!names.insert(name).second) throw InputError("duplicate tool name '" + name + "'");
    if (!forced_name.empty() && name != forced_name) continue;

    const ojson params = fn.contains("parameters") ? fn["parameters"] : ojson(nullptr);
    struct Param {
      std::string key;
      NodeP node;
      bool required;
    };
    std::vector<Param> ps;
    if (!params.is_null()) {
      if (!params.is_object()) throw InputError("tool '" + name + "': parameters must be a JSON schema object");
      if (params.contains("type") && params["type"] != "object")
        throw InputError("tool '" + name + "': parameters must have type \"object\"");
      std::set<std::string> req;
      if (params.contains("required")) {
        if (!params["required"].is_array()) throw InputError("tool '" + name + "': required must be an array");
        for (const auto& r : params["required"]) {
          if (!r.is_string()) throw InputError("tool '" + name + "': required must hold strings");
          req.insert(r.get<std::string>());
        }
      }
      std::vector<std::pair<std::string, ojson>> props;
      if (params.contains("properties")) {
        if (!params["properties"].is_object())
          throw InputError("tool '" + name + "': parameters.properties must be an object");
        for (auto it = params["properties"].begin(); it != params["properties"].end(); ++it)
          props.emplace_back(it.key(), it.value());
      }
      for (const auto& r : params.value("required", ojson::array())) {
        bool found = false;
        for (const auto& p : props) found = found || p.first == r.get<std::string>();
        if (!found) props.emplace_back(r.get<std::string>(), ojson(true));
      }
      for (const auto& [key, schema] : props) {
        check_name("tool '" + name + "' parameter", key);
        const std::string head = "<" + kMarker + "parameter name=\"" + key + "\" string=\"";
        NodeP value;
        ojson resolved = schema;
        if (schema.is_object() && schema.contains("$ref") && schema.size() <= 3 && schema["$ref"].is_string()) {
          const std::string ref = schema["$ref"].get<std::string>();
          try {
            if (!ref.empty() && ref[0] == '#' && ref != "#") resolved = params.at(ojson::json_pointer(ref.substr(1)));
          } catch (const nlohmann::json::exception&) {
          }
        }
        std::vector<std::string> choices;
        const FreeformGrammar* ff = nullptr;
        for (const auto& f : freeform)
          if (f.tool == name) ff = &f;
        try {
          if (ff && key == "input") {
            // Raw text in the grammar's language; never NUL or U+FF5C (no marker can form).
            static const CpSet kRawExcluded = {{0, 0}, {0xFF5C, 0xFF5C}};
            value = seq({lit(head + "true\">"), freeform_node(rs, ff->syntax, ff->definition, &kRawExcluded), lit(kParamEnd)});
          } else if (is_plain_string(resolved)) {
            if (!raw_text) raw_text = utf8_text_avoiding(kMarker);
            value = seq({lit(head + "true\">"), raw_text, lit(kParamEnd)});
          } else if (raw_string_choices(resolved, choices)) {
            std::vector<NodeP> alts;
            for (auto& c : choices) alts.push_back(lit(c));
            value = seq({lit(head + "true\">"), alt(std::move(alts)), lit(kParamEnd)});
          } else {
            value = seq({lit(head + "false\">"), buildable(schema, params) ? jb.schema(schema, params) : jb.any_value(), lit(kParamEnd)});
          }
        } catch (const InputError& e) {
          throw InputError("tool '" + name + "' parameter '" + key + "': " + e.what());
        }
        ps.push_back({key, value, req.count(key) > 0});
      }
    }
    // Parameters in schema order; required always, optional may be skipped; with none written
    // the invoke body is the single "\n" the encoder produces.
    const int n = static_cast<int>(ps.size());
    auto g = std::make_shared<Node>();
    g->kind = Node::Graph;
    g->nstates = 2 * (n + 1) + 1;
    g->start = 0;
    auto none = [](int i) { return i; };
    auto some = [n](int i) { return n + 1 + i; };
    const int empty_end = 2 * (n + 1);
    for (int i = 0; i < n; ++i) {
      NodeP p = seq({ps[i].node, lit("\n")});
      g->edges.push_back({none(i), some(i + 1), p});
      g->edges.push_back({some(i), some(i + 1), p});
      if (!ps[i].required) {
        g->edges.push_back({none(i), none(i + 1), nullptr});
        g->edges.push_back({some(i), some(i + 1), nullptr});
      }
    }
    g->edges.push_back({none(n), empty_end, lit("\n")});
    g->finals = {some(n), empty_end};
    invokes.push_back(seq({lit("<" + kMarker + "invoke name=\"" + name + "\">\n"), g, lit("</" + kMarker + "invoke>")}));
  }
  if (invokes.empty()) throw InputError("tool_choice names function '" + forced_name + "', which is not in tools");
  const uint32_t inv_rule = rs.add_rule("invoke");
  rs.set_body(inv_rule, alt(std::move(invokes)));
  NodeP inv = ref(inv_rule);
  rs.set_body(root, seq({lit("\n\n<" + kMarker + "tool_calls>\n"), inv,
                         parallel ? star(seq({lit("\n"), inv})) : empty(), lit("\n</" + kMarker + "tool_calls>")}));
  return compile(rs, root);
}

}  // namespace

GrammarPtr compile_dsml_tool_calls(const nlohmann::ordered_json& openai_tools, const std::string& forced_name,
                                   bool parallel_tool_calls, const std::vector<FreeformGrammar>& freeform) {
  return compile_dsml(openai_tools, forced_name, parallel_tool_calls, freeform);
}

GrammarPtr compile_dsml_tool_calls(const nlohmann::json& openai_tools, const std::string& forced_name,
                                   bool parallel_tool_calls) {
  return compile_dsml(nlohmann::ordered_json::parse(openai_tools.dump()), forced_name, parallel_tool_calls, {});
}

}  // namespace v4
