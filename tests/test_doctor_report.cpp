// swarmnetctl doctor's verdict: the exit code scripts act on and the lines
// an operator reads (ctl/doctor_report.hpp).
#include <catch2/catch.hpp>

#include "ctl/doctor_report.hpp"

using namespace swarmnet::doctor;

namespace {
Check check(const char* name, Status status, const char* fix = "") {
  return Check{"kernel", name, status, std::string(name) + " detail", fix};
}
}  // namespace

TEST_CASE("doctor exits 0 when all is there, 1 when a required piece is missing, 2 when only optional ones are") {
  CHECK(exit_code({}) == 0);
  CHECK(exit_code({check("vxlan", Status::ok), check("peer", Status::skipped)}) == 0);
  CHECK(exit_code({check("vxlan", Status::ok), check("ipvs", Status::optional_missing)}) == 2);
  CHECK(exit_code({check("esp", Status::optional_missing), check("ipvs", Status::optional_missing)}) == 2);
  // Required wins over optional, whatever the order.
  CHECK(exit_code({check("ipvs", Status::optional_missing), check("vxlan", Status::missing)}) == 1);
  CHECK(exit_code({check("vxlan", Status::missing), check("ipvs", Status::optional_missing)}) == 1);
  CHECK(exit_code({check("vxlan", Status::missing), check("peer", Status::skipped)}) == 1);
}

TEST_CASE("doctor prints one line per check with the fix of what is missing, then a summary") {
  const std::vector<Check> checks{check("vxlan", Status::ok, "not shown when ok"),
                                  check("ipvs", Status::optional_missing, "modprobe ip_vs"),
                                  check("bridge", Status::missing, "modprobe bridge")};
  const std::string text = to_text(checks);
  CHECK(text ==
        "ok                kernel vxlan   vxlan detail\n"
        "optional missing  kernel ipvs    ipvs detail; fix: modprobe ip_vs\n"
        "missing           kernel bridge  bridge detail; fix: modprobe bridge\n"
        "1 required piece(s) missing: swarmnet will not work on this host until they are fixed\n");

  CHECK(to_text({check("ipvs", Status::optional_missing, "x"), check("d", Status::skipped)})
            .ends_with("swarmnet works here; 1 optional feature(s) missing (see their lines for what is used "
                       "instead) (1 check(s) skipped)\n"));
  CHECK(to_text({check("vxlan", Status::ok)}).ends_with("everything swarmnet needs is here\n"));
}

TEST_CASE("doctor's JSON carries every check and the exit code") {
  const auto v = to_json({check("vxlan", Status::ok), check("esp", Status::optional_missing, "modprobe esp4")});
  const auto& o = v.as_object();
  CHECK(o.at("exit_code").as_int64() == 2);
  const auto& list = o.at("checks").as_array();
  REQUIRE(list.size() == 2);
  CHECK(list[1].at("area") == "kernel");
  CHECK(list[1].at("name") == "esp");
  CHECK(list[1].at("status") == "optional missing");
  CHECK(list[1].at("detail") == "esp detail");
  CHECK(list[1].at("fix") == "modprobe esp4");
}
