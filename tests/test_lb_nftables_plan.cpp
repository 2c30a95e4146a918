// The nftables balancer's planning and describe_differences, without root:
// which operations a change turns into (only the changed VIP's elements,
// nothing for an unchanged VIP, the mod-N chains before the elements).
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "lb/balancer.hpp"
#include "lb/nft_plan.hpp"

using namespace swarmnet;
using namespace swarmnet::lb;
using namespace swarmnet::lb::nft;

namespace {

Ipv4Address ip(const char* text) { return Ipv4Address::parse(text); }

VirtualIp vip(const std::string& key, const char* address, std::vector<Ipv4Address> backends,
              const std::string& bridge = "swn-a") {
  return VirtualIp{key, ip(address), bridge, std::move(backends)};
}

TableState with_chains() {
  TableState state;
  state.exists = true;
  for (uint32_t n = 1; n <= kPrecreatedModChains; ++n) state.mod_chains.insert(n);
  return state;
}

}  // namespace

TEST_CASE("a new VIP is three element additions", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")}), state, plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2 1:10.0.0.3\n"
        "add 10.0.0.200 to vips vip-addresses (goto mod-2, \"key web/n1 bridge swn-a\")\n");
}

TEST_CASE("a VIP without backends accepts in nat (and is rejected in input)", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {}), state, plan);
  CHECK(describe(plan) == "add 10.0.0.200 to vips vip-addresses (accept, \"key web/n1 bridge swn-a\")\n");
}

TEST_CASE("an unchanged VIP plans nothing", "[lb]") {
  TableState state = with_chains();
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")});
  Plan plan;
  plan_upsert(expected(want), want, state, plan);
  CHECK(plan.empty());
}

TEST_CASE("replacing one backend touches one element, not the verdict", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")});
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.9")});
  Plan plan;
  plan_upsert(expected(old), want, state, plan);
  CHECK(describe(plan) ==
        "delete backends 10.0.0.200 . 2\n"
        "add backends 10.0.0.200 . 2:10.0.0.9\n");
}

TEST_CASE("removing a backend moves the VIP to mod-(N-1) and drops the buckets that changed", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")});
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.4")});
  Plan plan;
  plan_upsert(expected(old), want, state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vips\n"
        "delete backends 10.0.0.200 . 1 2\n"
        "add backends 10.0.0.200 . 1:10.0.0.4\n"
        "add 10.0.0.200 to vips (goto mod-2, \"key web/n1 bridge swn-a\")\n");
}

TEST_CASE("a backend count never seen before adds its mod-N chain first", "[lb]") {
  TableState state = with_chains();
  std::vector<Ipv4Address> many;
  for (uint32_t i = 0; i < 20; ++i) many.push_back(Ipv4Address(0x0a000100u + i));
  Plan plan;
  plan_upsert(std::nullopt, vip("big/n1", "10.0.0.200", many), state, plan);
  plan_upsert(std::nullopt, vip("big2/n1", "10.0.0.201", many), state, plan);  // chain known now
  Plan ordered = order_for_batch(plan);
  REQUIRE(std::holds_alternative<AddModChain>(ordered.front()));
  CHECK(std::get<AddModChain>(ordered.front()).buckets == 20);
  CHECK(std::count_if(plan.begin(), plan.end(), [](const Op& op) { return std::holds_alternative<AddModChain>(op); }) == 1);
  CHECK(state.mod_chains.count(20) == 1);
}

TEST_CASE("a VIP moved to another address or bridge is removed and added", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2")});
  Plan plan;
  plan_upsert(expected(old), vip("web/n1", "10.0.0.201", {ip("10.0.0.2")}), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vips vip-addresses\n"
        "delete backends 10.0.0.200 . 0\n"
        "add backends 10.0.0.201 . 0:10.0.0.2\n"
        "add 10.0.0.201 to vips vip-addresses (goto mod-1, \"key web/n1 bridge swn-a\")\n");
  plan.clear();
  plan_upsert(expected(old), vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}, "swn-b"), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vips\n"
        "add 10.0.0.200 to vips (goto mod-1, \"key web/n1 bridge swn-b\")\n");
}

TEST_CASE("remove deletes the VIP's elements and nothing else", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_remove(expected(vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")})), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vips vip-addresses\n"
        "delete backends 10.0.0.200 . 0 1\n");
}

TEST_CASE("a missing table plans the base objects once", "[lb]") {
  TableState state;
  Plan plan;
  plan_base(state, plan);
  CHECK(state.exists);
  CHECK(state.mod_chains.size() == kPrecreatedModChains);
  Plan again;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}), state, again);
  CHECK(describe(again).find("add chain") == std::string::npos);
}

TEST_CASE("the batch order: base, chains, deletions, additions", "[lb]") {
  Plan plan{AddVipElement{ip("10.0.0.1"), "c", 1, true, true}, AddBackends{ip("10.0.0.1"), {}},
            DeleteVipElement{ip("10.0.0.2"), true, true}, AddModChain{40}, AddTable{},
            DeleteBackends{ip("10.0.0.2"), {0}}};
  Plan ordered = order_for_batch(plan);
  CHECK(std::holds_alternative<AddTable>(ordered[0]));
  CHECK(std::holds_alternative<AddModChain>(ordered[1]));
  CHECK(std::holds_alternative<DeleteVipElement>(ordered[2]));
  CHECK(std::holds_alternative<DeleteBackends>(ordered[3]));
  CHECK(std::holds_alternative<AddBackends>(ordered[4]));
  CHECK(std::holds_alternative<AddVipElement>(ordered[5]));
}

TEST_CASE("orphans left by hand or a crash are deleted by sync's plan", "[lb]") {
  TableState state = with_chains();
  state.orphan_mapped = {ip("10.0.0.7")};
  state.orphan_addresses = {ip("10.0.0.7"), ip("10.0.0.8")};
  state.orphan_backends[ip("10.0.0.9")] = {0, 3};
  Plan plan;
  plan_orphans(state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.7 from vips vip-addresses\n"
        "delete 10.0.0.8 from vip-addresses\n"
        "delete backends 10.0.0.9 . 0 3\n");
}

TEST_CASE("a task's hairpin element lives while any VIP's bucket points at it", "[lb]") {
  TableState state;
  Plan plan;
  plan_base(state, plan);
  REQUIRE(state.hairpin_ready);
  plan.clear();
  auto web = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")});
  plan_upsert(std::nullopt, web, state, plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2 1:10.0.0.3\n"
        "add hairpin 10.0.0.2 10.0.0.3\n"
        "add 10.0.0.200 to vips vip-addresses (goto mod-2, \"key web/n1 bridge swn-a\")\n");
  // A second VIP on the same task adds no element; its removal deletes none.
  plan.clear();
  auto api = vip("api/n1", "10.0.0.201", {ip("10.0.0.3")});
  plan_upsert(std::nullopt, api, state, plan);
  CHECK(describe(plan).find("hairpin") == std::string::npos);
  plan.clear();
  plan_remove(expected(api), state, plan);
  CHECK(describe(plan).find("hairpin") == std::string::npos);
  // The task leaves web, its last VIP: its element goes.
  plan.clear();
  plan_upsert(expected(web), vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}), state, plan);
  CHECK(describe(plan).find("delete hairpin 10.0.0.3\n") != std::string::npos);
  CHECK(state.hairpin == std::set<Ipv4Address>{ip("10.0.0.2")});
  CHECK(state.backend_refs == std::map<Ipv4Address, uint32_t>{{ip("10.0.0.2"), 1}});
}

TEST_CASE("a table without hairpin (older swarmnetd) is upgraded with its tasks", "[lb]") {
  TableState state = with_chains();
  state.vips["web/n1"] = expected(vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")}));
  count_backends(state);
  Plan plan;
  plan_upgrade(state, plan);
  CHECK(describe(plan) ==
        "add chain output, set hairpin, their rules\n"
        "add hairpin 10.0.0.2 10.0.0.3\n");
  // Elements nobody needs (left by a crash) go with sync's orphans.
  state.hairpin.insert(ip("10.0.0.9"));
  plan.clear();
  plan_orphans(state, plan);
  CHECK(describe(plan) == "delete hairpin 10.0.0.9\n");
}

TEST_CASE("names and comments round-trip; bad keys are refused", "[lb]") {
  CHECK(buckets_of_chain(mod_chain(12)) == 12u);
  CHECK(!buckets_of_chain("mod-0"));
  CHECK(!buckets_of_chain("mod-012"));
  CHECK(!buckets_of_chain("prerouting"));
  CHECK(parse_vip_comment(vip_comment("svc/net", "swn-x")) == std::make_pair(std::string("svc/net"), std::string("swn-x")));
  CHECK(!parse_vip_comment("something else"));
  CHECK_NOTHROW(check_key("0123abcd/ffee99"));
  CHECK_THROWS_AS(check_key(""), Error);
  CHECK_THROWS_AS(check_key("has space"), Error);
  CHECK_THROWS_AS(check_key(std::string(64, 'a')), Error);
}

TEST_CASE("describe_differences names stale and missing backends, VIPs and addresses", "[lb]") {
  auto a = vip("a/n", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")});
  auto b = vip("b/n", "10.0.0.201", {});
  CHECK(describe_differences({a, b}, {a, b}).empty());

  auto a_kernel = vip("a/n", "10.0.0.200", {ip("10.0.0.3"), ip("10.0.0.4")}, "");
  auto c = vip("c/n", "10.0.0.202", {ip("10.0.0.5")});
  CHECK(describe_differences({a, b}, {a_kernel, c}) ==
        "VIP a/n: no local route on any bridge, swn-a intended\n"
        "VIP a/n: stale backend 10.0.0.4\n"
        "VIP a/n: missing backend 10.0.0.2\n"
        "VIP b/n: missing from the kernel (intended 10.0.0.201 on swn-a, 0 backends)\n"
        "VIP c/n: not intended, in the kernel (10.0.0.202 on swn-a, 1 backend)\n");
  CHECK(describe_differences({a}, {vip("a/n", "10.0.0.250", a.backends)}) ==
        "VIP a/n: address 10.0.0.250 in the kernel, 10.0.0.200 intended\n");
}
