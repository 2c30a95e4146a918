// Typed reads from untrusted CNI JSON that fail with CniError(7) naming the
// full path of the field ("args.cni.labels[1].value: expected a string"), so
// an operator sees which line of the conflist to fix.
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace swarmnet::cni::json_path {

namespace json = boost::json;

std::string join(std::string_view parent, std::string_view key);
std::string index(std::string_view parent, size_t i);
std::string kind_of(const json::value& v);

[[noreturn]] void wrong_type(std::string_view path, std::string_view expected,
                             const json::value& v);

const json::object& object(const json::value& v, std::string_view path);
const json::array& array(const json::value& v, std::string_view path);
std::string_view string(const json::value& v, std::string_view path);

// Field readers: absent or null gives nullopt / empty.
const json::value* field(const json::object& o, std::string_view key);
std::optional<std::string> opt_string(const json::object& o, std::string_view parent,
                                      std::string_view key);
std::optional<unsigned> opt_uint(const json::object& o, std::string_view parent,
                                 std::string_view key, unsigned max);
std::optional<int> opt_int(const json::object& o, std::string_view parent, std::string_view key);
std::vector<std::string> string_list(const json::object& o, std::string_view parent,
                                     std::string_view key);
const json::object* opt_object(const json::object& o, std::string_view parent,
                               std::string_view key);
const json::array* opt_array(const json::object& o, std::string_view parent, std::string_view key);

}  // namespace swarmnet::cni::json_path
