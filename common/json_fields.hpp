// Reading JSON objects field by field with errors that name the field:
// "field \"subnet\": expected a string". Used by every decoder of
// untrusted JSON (API bodies, CNI config, Docker plugin calls).
#pragma once

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace swarmnet::json_fields {

namespace json = boost::json;

// The value as an object, or Error(invalid_argument) saying what it was.
const json::object& as_object(const json::value& v, std::string_view what);

const json::value* find(const json::object& o, std::string_view key);

std::string required_string(const json::object& o, std::string_view key);
std::optional<std::string> optional_string(const json::object& o, std::string_view key);
std::string string_or(const json::object& o, std::string_view key, std::string fallback);
bool bool_or(const json::object& o, std::string_view key, bool fallback);
std::optional<uint64_t> optional_uint(const json::object& o, std::string_view key, uint64_t max);
std::vector<std::string> string_array(const json::object& o, std::string_view key);

// Parses text into a value; Error(invalid_argument) "invalid JSON: ..." otherwise.
json::value parse(std::string_view text, std::string_view what);

}  // namespace swarmnet::json_fields
