#include "ctl/doctor_report.hpp"

#include <algorithm>

namespace swarmnet::doctor {

std::string_view to_string(Status status) {
  switch (status) {
    case Status::ok:
      return "ok";
    case Status::missing:
      return "missing";
    case Status::optional_missing:
      return "optional missing";
    case Status::skipped:
      return "skipped";
  }
  return "?";
}

int exit_code(const std::vector<Check>& checks) {
  auto any = [&](Status s) {
    return std::any_of(checks.begin(), checks.end(), [s](const Check& c) { return c.status == s; });
  };
  if (any(Status::missing)) return 1;
  if (any(Status::optional_missing)) return 2;
  return 0;
}

std::string to_text(const std::vector<Check>& checks) {
  size_t status_width = 0, what_width = 0;
  for (const auto& c : checks) {
    status_width = std::max(status_width, to_string(c.status).size());
    what_width = std::max(what_width, c.area.size() + 1 + c.name.size());
  }
  std::string out;
  size_t counts[4] = {0, 0, 0, 0};
  for (const auto& c : checks) {
    ++counts[static_cast<int>(c.status)];
    std::string status(to_string(c.status));
    std::string what = c.area + " " + c.name;
    out += status + std::string(status_width - status.size() + 2, ' ');
    out += what + std::string(what_width - what.size() + 2, ' ');
    out += c.detail;
    if (!c.fix.empty() && c.status != Status::ok) out += "; fix: " + c.fix;
    out += "\n";
  }
  switch (exit_code(checks)) {
    case 0:
      out += "everything swarmnet needs is here";
      break;
    case 1:
      out += std::to_string(counts[static_cast<int>(Status::missing)]) +
             " required piece(s) missing: swarmnet will not work on this host until they are fixed";
      break;
    default:
      out += "swarmnet works here; " + std::to_string(counts[static_cast<int>(Status::optional_missing)]) +
             " optional feature(s) missing (see their lines for what is used instead)";
  }
  if (size_t skipped = counts[static_cast<int>(Status::skipped)]) {
    out += " (" + std::to_string(skipped) + " check(s) skipped)";
  }
  out += "\n";
  return out;
}

boost::json::value to_json(const std::vector<Check>& checks) {
  boost::json::array list;
  for (const auto& c : checks) {
    list.push_back(boost::json::object{{"area", c.area},
                                       {"name", c.name},
                                       {"status", to_string(c.status)},
                                       {"detail", c.detail},
                                       {"fix", c.fix}});
  }
  return boost::json::object{{"checks", std::move(list)}, {"exit_code", exit_code(checks)}};
}

}  // namespace swarmnet::doctor
