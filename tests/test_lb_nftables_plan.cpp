// The nftables balancer's planning and describe_differences, without root:
// which operations a change turns into (only the changed VIP's elements,
// nothing for an unchanged VIP, the vips-N rules before the elements, no
// element that jumps), and how a table of the earlier shape is rebuilt.
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
  for (uint32_t n = 1; n <= kPrecreatedBuckets; ++n) state.bucket_rules.insert(n);
  return state;
}

}  // namespace

TEST_CASE("a new VIP is three element additions", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")}), state, plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2 1:10.0.0.3\n"
        "add hairpin 10.0.0.2 10.0.0.3\n"
        "add 10.0.0.200 to vips-2\n"
        "add 10.0.0.200 to vip-addresses (\"key web/n1 bridge swn-a\")\n");
}

TEST_CASE("a VIP without backends is in no vips-N set (nat lets it by, input rejects it)", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {}), state, plan);
  CHECK(describe(plan) == "add 10.0.0.200 to vip-addresses (\"key web/n1 bridge swn-a\")\n");
  // Its first backend: the VIP joins vips-1, its record stays.
  plan.clear();
  plan_upsert(expected(vip("web/n1", "10.0.0.200", {})), vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}), state,
              plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2\n"
        "add hairpin 10.0.0.2\n"
        "add 10.0.0.200 to vips-1\n");
}

TEST_CASE("an unchanged VIP plans nothing", "[lb]") {
  TableState state = with_chains();
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")});
  Plan plan;
  plan_upsert(expected(want), want, state, plan);
  CHECK(plan.empty());
}

TEST_CASE("replacing one backend touches one element, not the VIP's set", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")});
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.9")});
  Plan plan;
  plan_upsert(expected(old), want, state, plan);
  CHECK(describe(plan) ==
        "delete backends 10.0.0.200 . 2\n"
        "add backends 10.0.0.200 . 2:10.0.0.9\n"
        "add hairpin 10.0.0.9\n");
}

TEST_CASE("removing a backend moves the VIP to vips-(N-1) and drops the buckets that changed", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")});
  auto want = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.4")});
  Plan plan;
  plan_upsert(expected(old), want, state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vips-3\n"
        "delete backends 10.0.0.200 . 1 2\n"
        "add backends 10.0.0.200 . 1:10.0.0.4\n"
        "add hairpin 10.0.0.4\n"
        "add 10.0.0.200 to vips-2\n");
}

TEST_CASE("a backend count never seen before adds its vips-N set and rule first", "[lb]") {
  TableState state = with_chains();
  std::vector<Ipv4Address> many;
  for (uint32_t i = 0; i < 20; ++i) many.push_back(Ipv4Address(0x0a000100u + i));
  Plan plan;
  plan_upsert(std::nullopt, vip("big/n1", "10.0.0.200", many), state, plan);
  plan_upsert(std::nullopt, vip("big2/n1", "10.0.0.201", many), state, plan);  // chain known now
  Plan ordered = order_for_batch(plan);
  REQUIRE(std::holds_alternative<AddBucketRule>(ordered.front()));
  CHECK(std::get<AddBucketRule>(ordered.front()).buckets == 20);
  CHECK(std::count_if(plan.begin(), plan.end(), [](const Op& op) { return std::holds_alternative<AddBucketRule>(op); }) == 1);
  CHECK(state.bucket_rules.count(20) == 1);
}

TEST_CASE("a VIP moved to another address or bridge is removed and added", "[lb]") {
  TableState state = with_chains();
  auto old = vip("web/n1", "10.0.0.200", {ip("10.0.0.2")});
  Plan plan;
  plan_upsert(expected(old), vip("web/n1", "10.0.0.201", {ip("10.0.0.2")}), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vip-addresses\n"
        "delete 10.0.0.200 from vips-1\n"
        "delete backends 10.0.0.200 . 0\n"
        "add backends 10.0.0.201 . 0:10.0.0.2\n"
        "add hairpin 10.0.0.2\n"
        "add 10.0.0.201 to vips-1\n"
        "add 10.0.0.201 to vip-addresses (\"key web/n1 bridge swn-a\")\n");
  plan.clear();
  plan_upsert(expected(old), vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}, "swn-b"), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vip-addresses\n"
        "add 10.0.0.200 to vip-addresses (\"key web/n1 bridge swn-b\")\n");
}

TEST_CASE("remove deletes the VIP's elements and nothing else", "[lb]") {
  TableState state = with_chains();
  Plan plan;
  plan_remove(expected(vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")})), state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.200 from vip-addresses\n"
        "delete 10.0.0.200 from vips-2\n"
        "delete backends 10.0.0.200 . 0 1\n");
}

TEST_CASE("a missing table plans the base objects once", "[lb]") {
  TableState state;
  Plan plan;
  plan_base(state, plan);
  CHECK(state.exists);
  CHECK(state.bucket_rules.size() == kPrecreatedBuckets);
  CHECK(describe(plan).find("add set vips-16 and its rule\n") != std::string::npos);
  Plan again;
  plan_upsert(std::nullopt, vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}), state, again);
  CHECK(describe(again).find("add set") == std::string::npos);
}

TEST_CASE("the batch order: base, chains, deletions, additions", "[lb]") {
  Plan plan{AddVip{ip("10.0.0.1"), "c"}, AddMember{ip("10.0.0.1"), 1}, AddBackends{ip("10.0.0.1"), {}},
            DeleteMember{ip("10.0.0.2"), 1}, DeleteVip{ip("10.0.0.2")}, AddBucketRule{40}, AddTable{},
            DeleteBackends{ip("10.0.0.2"), {0}}, DeleteTable{}};
  Plan ordered = order_for_batch(plan);
  CHECK(std::holds_alternative<DeleteTable>(ordered[0]));
  CHECK(std::holds_alternative<AddTable>(ordered[1]));
  CHECK(std::holds_alternative<AddBucketRule>(ordered[2]));
  CHECK(std::holds_alternative<DeleteVip>(ordered[3]));
  CHECK(std::holds_alternative<DeleteMember>(ordered[4]));
  CHECK(std::holds_alternative<DeleteBackends>(ordered[5]));
  CHECK(std::holds_alternative<AddBackends>(ordered[6]));
  CHECK(std::holds_alternative<AddMember>(ordered[7]));
  CHECK(std::holds_alternative<AddVip>(ordered[8]));
}

TEST_CASE("orphans left by hand or a crash are deleted by sync's plan", "[lb]") {
  TableState state = with_chains();
  state.orphan_addresses = {ip("10.0.0.7"), ip("10.0.0.8")};
  state.orphan_members[3] = {ip("10.0.0.7")};
  state.orphan_backends[ip("10.0.0.9")] = {0, 3};
  Plan plan;
  plan_orphans(state, plan);
  CHECK(describe(plan) ==
        "delete 10.0.0.7 from vip-addresses\n"
        "delete 10.0.0.8 from vip-addresses\n"
        "delete 10.0.0.7 from vips-3\n"
        "delete backends 10.0.0.9 . 0 3\n");
}

TEST_CASE("a task's hairpin element lives while any VIP's bucket points at it", "[lb]") {
  TableState state;
  Plan plan;
  plan_base(state, plan);
  plan.clear();
  auto web = vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")});
  plan_upsert(std::nullopt, web, state, plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2 1:10.0.0.3\n"
        "add hairpin 10.0.0.2 10.0.0.3\n"
        "add 10.0.0.200 to vips-2\n"
        "add 10.0.0.200 to vip-addresses (\"key web/n1 bridge swn-a\")\n");
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

TEST_CASE("a table of the earlier shape is deleted and made again in one batch, holding what packets reached",
          "[lb]") {
  // As read from a table with @vips (VIP -> goto mod-N) and mod-1..16.
  TableState state = with_chains();
  state.legacy = true;
  state.vips["web/n1"] = expected(vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")}));
  KernelVip stale = expected(vip("api/n1", "10.0.0.201", {ip("10.0.0.4")}));
  stale.elements[5] = ip("10.0.0.9");  // a bucket no hash gives (mod-1): not carried over
  state.vips["api/n1"] = stale;
  state.hairpin = {ip("10.0.0.2"), ip("10.0.0.9")};
  count_backends(state);
  Plan plan;
  auto held = plan_rebuild(state, plan);
  CHECK(held == std::vector<VirtualIp>{vip("api/n1", "10.0.0.201", {ip("10.0.0.4")}),
                                       vip("web/n1", "10.0.0.200", {ip("10.0.0.2"), ip("10.0.0.3")})});
  CHECK(std::holds_alternative<DeleteTable>(order_for_batch(plan).front()));
  CHECK(describe(plan).find("add table\n") != std::string::npos);
  // The new table starts empty: each VIP is planned into it as new.
  CHECK(state.exists);
  CHECK(!state.legacy);
  CHECK(state.vips.empty());
  CHECK(state.hairpin.empty());
  CHECK(state.bucket_rules.size() == kPrecreatedBuckets);
  plan.clear();
  plan_upsert(std::nullopt, held[1], state, plan);
  CHECK(describe(plan) ==
        "add backends 10.0.0.200 . 0:10.0.0.2 1:10.0.0.3\n"
        "add hairpin 10.0.0.2 10.0.0.3\n"
        "add 10.0.0.200 to vips-2\n"
        "add 10.0.0.200 to vip-addresses (\"key web/n1 bridge swn-a\")\n");
}

TEST_CASE("hairpin elements nobody needs (left by a crash) go with sync's orphans", "[lb]") {
  TableState state = with_chains();
  state.vips["web/n1"] = expected(vip("web/n1", "10.0.0.200", {ip("10.0.0.2")}));
  state.hairpin = {ip("10.0.0.2"), ip("10.0.0.9")};
  count_backends(state);
  Plan plan;
  plan_orphans(state, plan);
  CHECK(describe(plan) == "delete hairpin 10.0.0.9\n");
}

TEST_CASE("names and comments round-trip; bad keys are refused", "[lb]") {
  CHECK(bucket_set(12) == "vips-12");
  CHECK(buckets_of_set(bucket_set(12)) == 12u);
  CHECK(!buckets_of_set("vips-0"));
  CHECK(!buckets_of_set("vips-012"));
  CHECK(!buckets_of_set("vip-addresses"));
  CHECK(buckets_of_legacy_chain("mod-7") == 7u);
  CHECK(!buckets_of_legacy_chain("prerouting"));
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
