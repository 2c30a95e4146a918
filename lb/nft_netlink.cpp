#include "lb/nft_netlink.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>

#include "common/error.hpp"

namespace swarmnet::lb::nft {
namespace {

// nft's datatype numbers, so that `nft list` prints our sets with types.
constexpr uint32_t kTypeIpAddr = 7;
constexpr uint32_t kTypeMark = 19;
constexpr uint32_t kTypeBits = 6;  // a concatenation's type: subtypes, 6 bits each

// Registers: 32-bit slots, NFT_REG32_00 is the first.
constexpr uint32_t reg32(uint32_t n) { return NFT_REG32_00 + n; }

// A batch page: a message never spans two, and element messages are kept
// well under the 64 KiB a netlink attribute can hold.
constexpr uint32_t kBatchPage = 128 * 1024;
constexpr size_t kElementsPerMessage = 512;

// libnftnl's free functions take const pointers (most) or not (batch).
template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    if (p) Free(p);
  }
};
using TablePtr = std::unique_ptr<nftnl_table, Deleter<nftnl_table_free>>;
using ChainPtr = std::unique_ptr<nftnl_chain, Deleter<nftnl_chain_free>>;
using RulePtr = std::unique_ptr<nftnl_rule, Deleter<nftnl_rule_free>>;
using SetPtr = std::unique_ptr<nftnl_set, Deleter<nftnl_set_free>>;
using BatchPtr = std::unique_ptr<nftnl_batch, Deleter<nftnl_batch_free>>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, Deleter<nftnl_udata_buf_free>>;

template <typename T>
T* check_alloc(T* p) {
  if (!p) throw Error(Errc::internal, "nftables: out of memory");
  return p;
}

Errc errc_of(int err) {
  switch (err) {
    case ENOENT:
      return Errc::not_found;
    case EEXIST:
    case EBUSY:
      return Errc::conflict;
    case EPERM:
    case EACCES:
      return Errc::unavailable;
    default:
      return Errc::internal;
  }
}

// ---- building messages ------------------------------------------------------

nftnl_expr* expr(const char* name) { return check_alloc(nftnl_expr_alloc(name)); }

void add_meta_l4proto(nftnl_rule* rule, uint32_t dreg) {
  nftnl_expr* e = expr("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_L4PROTO);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  nftnl_rule_add_expr(rule, e);
}

void add_cmp_u8(nftnl_rule* rule, uint32_t sreg, uint8_t value) {
  nftnl_expr* e = expr("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, &value, sizeof(value));
  nftnl_rule_add_expr(rule, e);
}

void add_payload(nftnl_rule* rule, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = expr("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  nftnl_rule_add_expr(rule, e);
}

constexpr uint32_t kSaddrOffset = 12;  // in the IPv4 header
constexpr uint32_t kDaddrOffset = 16;

void add_lookup(nftnl_rule* rule, const char* set, uint32_t sreg, std::optional<uint32_t> dreg) {
  nftnl_expr* e = expr("lookup");
  nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
  nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
  if (dreg) nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, *dreg);
  nftnl_rule_add_expr(rule, e);
}

RulePtr new_rule(const std::string& chain) {
  RulePtr rule(check_alloc(nftnl_rule_alloc()));
  nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, NFPROTO_IPV4);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, kTable);
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, chain.c_str());
  return rule;
}

// meta l4proto PROTO ip daddr @vip-addresses goto balance (in prerouting
// and output)
RulePtr dispatch_rule(const char* chain, uint8_t protocol) {
  RulePtr rule = new_rule(chain);
  add_meta_l4proto(rule.get(), NFT_REG_1);
  add_cmp_u8(rule.get(), NFT_REG_1, protocol);
  add_payload(rule.get(), NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, NFT_REG_1);
  add_lookup(rule.get(), kVipAddressSet, NFT_REG_1, std::nullopt);
  nftnl_expr* jump = expr("immediate");
  nftnl_expr_set_u32(jump, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(jump, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(NFT_GOTO));
  nftnl_expr_set_str(jump, NFTNL_EXPR_IMM_CHAIN, kBalanceChain);
  nftnl_rule_add_expr(rule.get(), jump);
  return rule;
}

// meta l4proto PROTO ct direction original ip daddr @vip-addresses reject
// (tcp reset / port unreachable). Only the original direction: the replies
// of the host's own flows to a VIP (see chain output) come back to the VIP.
RulePtr reject_rule(uint8_t protocol) {
  RulePtr rule = new_rule("input");
  add_meta_l4proto(rule.get(), NFT_REG_1);
  add_cmp_u8(rule.get(), NFT_REG_1, protocol);
  nftnl_expr* direction = expr("ct");
  nftnl_expr_set_u32(direction, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
  nftnl_expr_set_u32(direction, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  nftnl_rule_add_expr(rule.get(), direction);
  add_cmp_u8(rule.get(), NFT_REG_1, 0);  // IP_CT_DIR_ORIGINAL
  add_payload(rule.get(), NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, NFT_REG_1);
  add_lookup(rule.get(), kVipAddressSet, NFT_REG_1, std::nullopt);
  nftnl_expr* e = expr("reject");
  if (protocol == IPPROTO_TCP) {
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
  } else {
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 3);  // ICMP_PORT_UNREACH
  }
  nftnl_rule_add_expr(rule.get(), e);
  return rule;
}

// ip saddr . ip daddr @hairpin masquerade
RulePtr hairpin_rule() {
  RulePtr rule = new_rule("postrouting");
  add_payload(rule.get(), NFT_PAYLOAD_NETWORK_HEADER, kSaddrOffset, 4, reg32(0));
  add_payload(rule.get(), NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, reg32(1));
  add_lookup(rule.get(), kHairpinSet, reg32(0), std::nullopt);
  nftnl_rule_add_expr(rule.get(), expr("masq"));
  return rule;
}

// ip daddr @vips-N
//   dnat to ip daddr . jhash(ip saddr . th sport . ip daddr . th dport) mod N map @backends
//
// Registers: the hash input is four 32-bit slots 04..07 (the 16-bit ports
// zero-padded by the payload load, as nft lays out a concatenation); the
// lookup key is VIP . bucket in slots 00..01; the backend lands in 00.
RulePtr bucket_rule(uint32_t buckets) {
  RulePtr rule = new_rule(kBalanceChain);
  const std::string set = bucket_set(buckets);
  add_payload(rule.get(), NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, NFT_REG_1);
  add_lookup(rule.get(), set.c_str(), NFT_REG_1, std::nullopt);

  nftnl_rule* r = rule.get();
  add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, kSaddrOffset, 4, reg32(4));
  add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, reg32(5));
  add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, reg32(6));
  add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(7));
  nftnl_expr* hash = expr("hash");
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_SREG, reg32(4));
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_LEN, 16);
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_MODULUS, buckets);
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_SEED, kHashSeed);
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_OFFSET, 0);
  nftnl_expr_set_u32(hash, NFTNL_EXPR_HASH_DREG, reg32(1));
  nftnl_rule_add_expr(r, hash);
  add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, kDaddrOffset, 4, reg32(0));
  add_lookup(r, kBackendMap, reg32(0), reg32(0));
  nftnl_expr* nat = expr("nat");
  nftnl_expr_set_u32(nat, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
  nftnl_expr_set_u32(nat, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
  nftnl_expr_set_u32(nat, NFTNL_EXPR_NAT_REG_ADDR_MIN, reg32(0));
  nftnl_rule_add_expr(r, nat);
  return rule;
}

ChainPtr new_chain(const std::string& name) {
  ChainPtr chain(check_alloc(nftnl_chain_alloc()));
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_FAMILY, NFPROTO_IPV4);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, kTable);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, name.c_str());
  return chain;
}

ChainPtr base_chain(const char* name, const char* type, uint32_t hook, int32_t priority) {
  ChainPtr chain = new_chain(name);
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, type);
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, hook);
  nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, priority);
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
  return chain;
}

SetPtr new_set(const char* name) {
  SetPtr set(check_alloc(nftnl_set_alloc()));
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_IPV4);
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTable);
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, name);
  return set;
}

// A new set in a batch needs an id, unique in the batch (the kernel
// rejects NEWSET without one with EINVAL): 1..3 for the base sets, these
// plus N for vips-N.
constexpr uint32_t kBucketSetIdBase = 1000;

std::vector<SetPtr> base_sets() {
  std::vector<SetPtr> sets;
  SetPtr addresses = new_set(kVipAddressSet);
  nftnl_set_set_u32(addresses.get(), NFTNL_SET_FLAGS, 0);
  nftnl_set_set_u32(addresses.get(), NFTNL_SET_KEY_TYPE, kTypeIpAddr);
  nftnl_set_set_u32(addresses.get(), NFTNL_SET_KEY_LEN, 4);
  sets.push_back(std::move(addresses));
  SetPtr backends = new_set(kBackendMap);
  nftnl_set_set_u32(backends.get(), NFTNL_SET_FLAGS, NFT_SET_MAP);
  nftnl_set_set_u32(backends.get(), NFTNL_SET_KEY_TYPE, (kTypeIpAddr << kTypeBits) | kTypeMark);
  nftnl_set_set_u32(backends.get(), NFTNL_SET_KEY_LEN, 8);
  nftnl_set_set_u32(backends.get(), NFTNL_SET_DATA_TYPE, kTypeIpAddr);
  nftnl_set_set_u32(backends.get(), NFTNL_SET_DATA_LEN, 4);
  sets.push_back(std::move(backends));
  SetPtr hairpin = new_set(kHairpinSet);
  nftnl_set_set_u32(hairpin.get(), NFTNL_SET_FLAGS, 0);
  nftnl_set_set_u32(hairpin.get(), NFTNL_SET_KEY_TYPE, (kTypeIpAddr << kTypeBits) | kTypeIpAddr);
  nftnl_set_set_u32(hairpin.get(), NFTNL_SET_KEY_LEN, 8);
  sets.push_back(std::move(hairpin));
  uint32_t id = 1;
  for (SetPtr& set : sets) nftnl_set_set_u32(set.get(), NFTNL_SET_ID, id++);
  return sets;
}

SetPtr members_set(uint32_t buckets) {
  SetPtr set = new_set(bucket_set(buckets).c_str());
  nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, 0);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, kTypeIpAddr);
  nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, 4);
  nftnl_set_set_u32(set.get(), NFTNL_SET_ID, kBucketSetIdBase + buckets);
  return set;
}

// Element keys and data as the registers hold them: addresses in network
// order, the bucket (the hash's output) in host order.
struct BackendKey {
  uint32_t vip;
  uint32_t bucket;
};

BackendKey backend_key(Ipv4Address vip, uint32_t bucket) { return {vip.network_order(), bucket}; }

// "task . task", both in network order.
struct HairpinKey {
  uint32_t source;
  uint32_t destination;
};

HairpinKey hairpin_key(Ipv4Address task) { return {task.network_order(), task.network_order()}; }

// One batch being built: each message gets a sequence number and a
// description, so an error from the kernel names the operation.
class BatchBuilder {
 public:
  explicit BatchBuilder(uint32_t first_seq)
      : first_seq_(first_seq), seq_(first_seq), batch_(check_alloc(nftnl_batch_alloc(kBatchPage, kBatchPage))) {
    nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_.get())), seq_++);
    nftnl_batch_update(batch_.get());
  }

  // A header for the next message; the caller writes the payload, then
  // calls done().
  nlmsghdr* header(int type, uint16_t flags, std::string what) {
    what_.push_back(std::move(what));
    return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch_.get())), type,
                                 NFPROTO_IPV4, flags, seq_++);
  }
  void done(nlmsghdr* nlh) {
    const uint32_t len = nlh->nlmsg_len;
    if (nftnl_batch_update(batch_.get()) < 0) throw Error(Errc::internal, "nftables: out of memory");
    // A message that overflowed its page was copied to the start of a new
    // one (nlh is then stale): either way it ends where the next begins.
    // finish() asks the ACK on it; set on the stale copy, the kernel never
    // answered the batch.
    last_ = reinterpret_cast<nlmsghdr*>(static_cast<char*>(nftnl_batch_buffer(batch_.get())) - len);
  }

  void table() {
    TablePtr t(check_alloc(nftnl_table_alloc()));
    nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
    nlmsghdr* nlh = header(NFT_MSG_NEWTABLE, NLM_F_CREATE, std::string("add table ") + kTable);
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    done(nlh);
  }
  void chain(int type, uint16_t flags, nftnl_chain* c, const std::string& what) {
    nlmsghdr* nlh = header(type, flags, what);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    done(nlh);
  }
  void rule(int type, uint16_t flags, nftnl_rule* r, const std::string& what) {
    nlmsghdr* nlh = header(type, flags, what);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    done(nlh);
  }
  void set(nftnl_set* s, const std::string& what) {
    nlmsghdr* nlh = header(NFT_MSG_NEWSET, NLM_F_CREATE, what);
    nftnl_set_nlmsg_build_payload(nlh, s);
    done(nlh);
  }
  // `fill` adds elements to the set object; called with [begin, end) chunks.
  template <typename Fill>
  void elements(int type, const char* set_name, size_t count, Fill fill, const std::string& what) {
    for (size_t begin = 0; begin < count; begin += kElementsPerMessage) {
      size_t end = std::min(count, begin + kElementsPerMessage);
      SetPtr s = new_set(set_name);
      for (size_t i = begin; i < end; ++i) {
        nftnl_set_elem* elem = check_alloc(nftnl_set_elem_alloc());
        fill(elem, i);
        nftnl_set_elem_add(s.get(), elem);
      }
      nlmsghdr* nlh = header(type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, what);
      nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
      done(nlh);
    }
  }

  nftnl_batch* finish() {
    if (last_) last_->nlmsg_flags |= NLM_F_ACK;
    nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_.get())), seq_++);
    nftnl_batch_update(batch_.get());
    return batch_.get();
  }
  uint32_t next_seq() const { return seq_; }
  // The operation of a message, by its sequence number.
  std::string what(uint32_t seq) const {
    uint32_t index = seq - first_seq_ - 1;  // the first number is BATCH_BEGIN's
    return index < what_.size() ? what_[index] : "nftables batch";
  }
  uint32_t last_seq() const { return seq_ - 2; }  // the message before BATCH_END

 private:
  uint32_t first_seq_;
  uint32_t seq_;
  BatchPtr batch_;
  std::vector<std::string> what_;
  nlmsghdr* last_ = nullptr;
};

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

UdataPtr comment_udata(uint8_t type, const std::string& text) {
  UdataPtr udata(check_alloc(nftnl_udata_buf_alloc(text.size() + 16)));
  nftnl_udata_put_strz(udata.get(), type, text.c_str());
  return udata;
}

// The VIP an element operation is about, for error messages.
std::string op_vip(const Op& op) {
  return std::visit(Overloaded{
                        [](const DeleteVip& o) { return o.vip.str(); },
                        [](const DeleteMember& o) { return o.vip.str(); },
                        [](const DeleteBackends& o) { return o.vip.str(); },
                        [](const AddBackends& o) { return o.vip.str(); },
                        [](const AddMember& o) { return o.vip.str(); },
                        [](const AddVip& o) { return o.vip.str(); },
                        [](const auto&) { return std::string(); },
                    },
                    op);
}

// The ops of one kind from ordered[i] on, as one list (a full load's
// thousands of element operations then share netlink messages); moves i
// to the last of them. `one` is set when there was only one (the error
// then names its VIP).
template <typename Kind>
std::vector<const Kind*> run_of(const Plan& ordered, size_t& i, bool& one) {
  std::vector<const Kind*> run;
  size_t j = i;
  for (; j < ordered.size() && std::holds_alternative<Kind>(ordered[j]); ++j) run.push_back(&std::get<Kind>(ordered[j]));
  one = run.size() == 1;
  i = j - 1;
  return run;
}

void encode(BatchBuilder& b, const Plan& ordered) {
  for (size_t i = 0; i < ordered.size(); ++i) {
    const Op& op = ordered[i];
    bool one = false;  // set by run_of: the run is this one operation
    // A run's members of the vips-N sets: one batch of elements per set.
    auto members = [&](int type, const std::string& verb, const auto& run) {
      std::map<uint32_t, std::vector<uint32_t>> by_set;
      for (const auto* o : run) by_set[o->buckets].push_back(o->vip.network_order());
      for (auto& [buckets, keys] : by_set) {
        const std::string name = bucket_set(buckets);
        b.elements(type, name.c_str(), keys.size(),
                   [&](nftnl_set_elem* e, size_t k) { nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &keys[k], 4); },
                   verb + name + (one ? " for " + op_vip(op) : ""));
      }
    };
    // A run's task addresses in the hairpin set.
    auto hairpins = [&](int type, const std::string& what, const auto& run) {
      std::vector<HairpinKey> keys;
      for (const auto* o : run) {
        for (Ipv4Address task : o->tasks) keys.push_back(hairpin_key(task));
      }
      b.elements(type, kHairpinSet, keys.size(),
                 [&](nftnl_set_elem* e, size_t k) {
                   nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &keys[k], sizeof(HairpinKey));
                 },
                 what);
    };
    std::visit(
        Overloaded{
            [&](const DeleteTable&) {
              TablePtr t(check_alloc(nftnl_table_alloc()));
              nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
              nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
              nlmsghdr* nlh = b.header(NFT_MSG_DELTABLE, 0, std::string("delete table ") + kTable);
              nftnl_table_nlmsg_build_payload(nlh, t.get());
              b.done(nlh);
            },
            [&](const AddTable&) { b.table(); },
            [&](const AddBaseChains&) {
              ChainPtr pre = base_chain("prerouting", "nat", NF_INET_PRE_ROUTING, NF_IP_PRI_NAT_DST);
              b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, pre.get(), "add chain prerouting");
              ChainPtr post = base_chain("postrouting", "nat", NF_INET_POST_ROUTING, NF_IP_PRI_NAT_SRC);
              b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, post.get(), "add chain postrouting");
              ChainPtr input = base_chain("input", "filter", NF_INET_LOCAL_IN, NF_IP_PRI_FILTER);
              b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, input.get(), "add chain input");
              ChainPtr output = base_chain("output", "nat", NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST);
              b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, output.get(), "add chain output");
              ChainPtr balance = new_chain(kBalanceChain);
              b.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, balance.get(), std::string("add chain ") + kBalanceChain);
            },
            [&](const AddSets&) {
              for (SetPtr& s : base_sets()) {
                b.set(s.get(), std::string("add set ") + nftnl_set_get_str(s.get(), NFTNL_SET_NAME));
              }
            },
            [&](const AddBaseRules&) {
              for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
                RulePtr r = dispatch_rule("prerouting", proto);
                b.rule(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r.get(), "add rule prerouting");
                RulePtr local = dispatch_rule("output", proto);
                b.rule(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, local.get(), "add rule output");
                RulePtr reject = reject_rule(proto);
                b.rule(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, reject.get(), "add rule input");
              }
              RulePtr hairpin = hairpin_rule();
              b.rule(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, hairpin.get(), "add rule postrouting");
            },
            [&](const AddBucketRule& o) {
              const std::string name = bucket_set(o.buckets);
              SetPtr set = members_set(o.buckets);
              b.set(set.get(), "add set " + name);
              RulePtr r = bucket_rule(o.buckets);
              b.rule(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, r.get(),
                     std::string("add rule ") + kBalanceChain + " for " + name);
            },
            [&](const DeleteVip&) {
              std::vector<uint32_t> keys;
              for (const DeleteVip* o : run_of<DeleteVip>(ordered, i, one)) keys.push_back(o->vip.network_order());
              b.elements(NFT_MSG_DELSETELEM, kVipAddressSet, keys.size(),
                         [&](nftnl_set_elem* e, size_t k) { nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &keys[k], 4); },
                         std::string("delete elements from ") + kVipAddressSet + (one ? " for " + op_vip(op) : ""));
            },
            [&](const DeleteMember&) {
              members(NFT_MSG_DELSETELEM, "delete elements from ", run_of<DeleteMember>(ordered, i, one));
            },
            [&](const DeleteBackends&) {
              std::vector<BackendKey> keys;
              for (const DeleteBackends* o : run_of<DeleteBackends>(ordered, i, one)) {
                for (uint32_t bucket : o->buckets) keys.push_back(backend_key(o->vip, bucket));
              }
              b.elements(NFT_MSG_DELSETELEM, kBackendMap, keys.size(),
                         [&](nftnl_set_elem* e, size_t k) {
                           nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &keys[k], sizeof(BackendKey));
                         },
                         std::string("delete elements from ") + kBackendMap + (one ? " for " + op_vip(op) : ""));
            },
            [&](const DeleteHairpin&) {
              hairpins(NFT_MSG_DELSETELEM, "delete elements from hairpin", run_of<DeleteHairpin>(ordered, i, one));
            },
            [&](const AddBackends&) {
              std::vector<std::pair<BackendKey, uint32_t>> elements;
              for (const AddBackends* o : run_of<AddBackends>(ordered, i, one)) {
                for (const auto& [bucket, backend] : o->buckets) {
                  elements.emplace_back(backend_key(o->vip, bucket), backend.network_order());
                }
              }
              b.elements(NFT_MSG_NEWSETELEM, kBackendMap, elements.size(),
                         [&](nftnl_set_elem* e, size_t k) {
                           nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &elements[k].first, sizeof(BackendKey));
                           nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, &elements[k].second, 4);
                         },
                         std::string("add elements to ") + kBackendMap + (one ? " for " + op_vip(op) : ""));
            },
            [&](const AddHairpin&) {
              hairpins(NFT_MSG_NEWSETELEM, "add elements to hairpin", run_of<AddHairpin>(ordered, i, one));
            },
            [&](const AddMember&) {
              members(NFT_MSG_NEWSETELEM, "add elements to ", run_of<AddMember>(ordered, i, one));
            },
            [&](const AddVip&) {
              std::vector<const AddVip*> run = run_of<AddVip>(ordered, i, one);
              b.elements(NFT_MSG_NEWSETELEM, kVipAddressSet, run.size(),
                         [&](nftnl_set_elem* e, size_t k) {
                           uint32_t key = run[k]->vip.network_order();
                           nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, &key, 4);
                           UdataPtr udata = comment_udata(NFTNL_UDATA_SET_ELEM_COMMENT, run[k]->comment);
                           nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(udata.get()),
                                              nftnl_udata_buf_len(udata.get()));
                         },
                         std::string("add elements to ") + kVipAddressSet + (one ? " for " + op_vip(op) : ""));
            },
        },
        op);
  }
}

// Sends the batch and checks the kernel's answers. `missing_ok`: ENOENT
// is not an error (a deletion of something already gone).
void send_batch(int fd, BatchBuilder& builder, std::vector<char>& buffer, bool missing_ok) {
  nftnl_batch* batch = builder.finish();
  uint32_t last = builder.last_seq();
  // The whole batch is one sendmsg (the kernel takes a batch from one
  // message buffer), so the socket's send buffer must hold it.
  std::vector<iovec> iov(static_cast<size_t>(nftnl_batch_iovec_len(batch)));
  nftnl_batch_iovec(batch, iov.data(), static_cast<uint32_t>(iov.size()));
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  int sndbuf = static_cast<int>(total + 65536);
  if (sndbuf > 212992) setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof(kernel);
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (::sendmsg(fd, &msg, 0) < 0) throw_errno(Errc::internal, "nftables: send batch", errno);

  // The kernel runs the whole transaction inside sendmsg(), so its answers
  // (the errors, and the ACK asked for on the last message) are queued
  // by now: read them without waiting.
  bool answered = false;
  std::optional<Error> error;
  for (;;) {
    ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (!error) error = Error(Errc::internal, std::string("nftables: read batch answers: ") + strerror(errno));
      break;
    }
    auto* nlh = reinterpret_cast<nlmsghdr*>(buffer.data());
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      int code = -static_cast<nlmsgerr*>(mnl_nlmsg_get_payload(nlh))->error;
      if (nlh->nlmsg_seq == last) answered = true;
      if (code == 0 || (missing_ok && code == ENOENT) || error) continue;
      error = Error(errc_of(code), "nftables: " + builder.what(nlh->nlmsg_seq) + ": " + strerror(code));
    }
  }
  if (error) throw *error;
  if (!answered) throw Error(Errc::internal, "nftables: the kernel did not answer the batch");
}

// ---- reading ----------------------------------------------------------------

std::optional<std::string> element_comment(nftnl_set_elem* e) {
  if (!nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_USERDATA)) return std::nullopt;
  uint32_t len = 0;
  const void* data = nftnl_set_elem_get(e, NFTNL_SET_ELEM_USERDATA, &len);
  std::optional<std::string> comment;
  nftnl_udata_parse(
      data, len,
      [](const nftnl_udata* attr, void* out) -> int {
        if (nftnl_udata_type(attr) == NFTNL_UDATA_SET_ELEM_COMMENT && nftnl_udata_len(attr) > 0) {
          const char* text = static_cast<const char*>(nftnl_udata_get(attr));
          static_cast<std::optional<std::string>*>(out)->emplace(text, strnlen(text, nftnl_udata_len(attr)));
        }
        return MNL_CB_OK;
      },
      &comment);
  return comment;
}

// Each chain's name, from a chain dump.
int on_chain(const nlmsghdr* nlh, void* data) {
  ChainPtr chain(check_alloc(nftnl_chain_alloc()));
  if (nftnl_chain_nlmsg_parse(nlh, chain.get()) < 0) return MNL_CB_OK;
  static_cast<std::set<std::string>*>(data)->insert(nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_NAME));
  return MNL_CB_OK;
}

// Each set's name, from a set dump.
int on_set(const nlmsghdr* nlh, void* data) {
  SetPtr set(check_alloc(nftnl_set_alloc()));
  if (nftnl_set_nlmsg_parse(nlh, set.get()) < 0) return MNL_CB_OK;
  static_cast<std::set<std::string>*>(data)->insert(nftnl_set_get_str(set.get(), NFTNL_SET_NAME));
  return MNL_CB_OK;
}

// The N of each rule (of chain balance) that looks up a set vips-N.
int on_balance_rule(const nlmsghdr* nlh, void* data) {
  RulePtr rule(check_alloc(nftnl_rule_alloc()));
  if (nftnl_rule_nlmsg_parse(nlh, rule.get()) < 0) return MNL_CB_OK;
  nftnl_expr_foreach(
      rule.get(),
      [](nftnl_expr* e, void* out) -> int {
        const char* name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
        if (name && std::strcmp(name, "lookup") == 0 && nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_SET)) {
          if (auto n = buckets_of_set(nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET))) {
            static_cast<std::set<uint32_t>*>(out)->insert(*n);
          }
        }
        return 0;
      },
      data);
  return MNL_CB_OK;
}

using KeyAndBridge = std::pair<std::string, std::string>;

// The raw contents of the sets, before they are put together.
struct RawSets {
  // @vip-addresses, with what its comment says (nullopt: no comment of ours).
  std::map<Ipv4Address, std::optional<KeyAndBridge>> addresses;
  // The earlier shape's @vips elements with a comment of ours.
  std::map<Ipv4Address, KeyAndBridge> legacy_records;
  // Each VIP's N: the vips-N sets it is in (or the earlier @vips' goto mod-N).
  std::map<Ipv4Address, std::set<uint32_t>> members;
  std::map<std::pair<Ipv4Address, uint32_t>, Ipv4Address> backends;
  std::set<Ipv4Address> hairpin;
};

enum class SetKind { addresses, members, backends, hairpin, legacy_vips };

struct ElementsRead {
  RawSets* raw;
  SetKind kind;
  uint32_t buckets;  // of a vips-N set
};

std::optional<KeyAndBridge> comment_of(nftnl_set_elem* e) {
  auto comment = element_comment(e);
  return comment ? parse_vip_comment(*comment) : std::nullopt;
}

int on_elements(const nlmsghdr* nlh, void* data) {
  auto* read = static_cast<ElementsRead*>(data);
  RawSets& raw = *read->raw;
  SetPtr set(check_alloc(nftnl_set_alloc()));
  if (nftnl_set_elems_nlmsg_parse(nlh, set.get()) < 0) return MNL_CB_OK;
  nftnl_set_elems_iter* iter = nftnl_set_elems_iter_create(set.get());
  if (!iter) return MNL_CB_ERROR;
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(iter); e; e = nftnl_set_elems_iter_next(iter)) {
    uint32_t key_len = 0;
    const void* key = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &key_len);
    if (!key) continue;
    if (read->kind == SetKind::backends) {
      uint32_t data_len = 0;
      const void* value = nftnl_set_elem_get(e, NFTNL_SET_ELEM_DATA, &data_len);
      if (key_len != sizeof(BackendKey) || !value || data_len != 4) continue;
      BackendKey k;
      std::memcpy(&k, key, sizeof(k));
      uint32_t backend;
      std::memcpy(&backend, value, 4);
      raw.backends[{Ipv4Address(ntohl(k.vip)), k.bucket}] = Ipv4Address(ntohl(backend));
      continue;
    }
    if (read->kind == SetKind::hairpin) {
      HairpinKey k;
      if (key_len != sizeof(k)) continue;
      std::memcpy(&k, key, sizeof(k));
      // Only "task . task" elements are ours (we never add another).
      if (k.source == k.destination) raw.hairpin.insert(Ipv4Address(ntohl(k.source)));
      continue;
    }
    if (key_len != 4) continue;
    uint32_t address;
    std::memcpy(&address, key, 4);
    Ipv4Address vip(ntohl(address));
    switch (read->kind) {
      case SetKind::addresses:
        raw.addresses[vip] = comment_of(e);
        break;
      case SetKind::members:
        raw.members[vip].insert(read->buckets);
        break;
      case SetKind::legacy_vips:
        if (auto record = comment_of(e)) {
          raw.legacy_records[vip] = *record;
          if (nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_CHAIN)) {
            if (auto n = buckets_of_legacy_chain(nftnl_set_elem_get_str(e, NFTNL_SET_ELEM_CHAIN))) {
              raw.members[vip].insert(*n);
            }
          }
        }
        break;
      default:
        break;
    }
  }
  nftnl_set_elems_iter_destroy(iter);
  return MNL_CB_OK;
}

}  // namespace

NftSocket::NftSocket() : receive_buffer_(1 << 20) {
  sock_ = mnl_socket_open(NETLINK_NETFILTER);
  if (!sock_) throw_errno(Errc::unavailable, "open netfilter netlink socket", errno);
  if (mnl_socket_bind(sock_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(sock_);
    throw_errno(Errc::unavailable, "bind netfilter netlink socket", err);
  }
  portid_ = mnl_socket_get_portid(sock_);
  seq_ = static_cast<uint32_t>(::time(nullptr));
  // Room for the kernel's answers to a large dump without losing any.
  int size = 4 << 20;
  setsockopt(mnl_socket_get_fd(sock_), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
}

NftSocket::~NftSocket() {
  if (sock_) mnl_socket_close(sock_);
}

void NftSocket::apply(const Plan& plan) {
  if (plan.empty()) return;
  BatchBuilder builder(seq_);
  encode(builder, order_for_batch(plan));
  seq_ = builder.next_seq() + 1;
  send_batch(mnl_socket_get_fd(sock_), builder, receive_buffer_, false);
}

void NftSocket::dump(int type, nlmsghdr* request, int (*callback)(const nlmsghdr*, void*), void* data,
                     const std::string& what) {
  (void)type;
  if (mnl_socket_sendto(sock_, request, request->nlmsg_len) < 0) {
    throw_errno(Errc::internal, what, errno);
  }
  uint32_t seq = request->nlmsg_seq;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_, receive_buffer_.data(), receive_buffer_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(Errc::internal, what, errno);
    }
    int ret = mnl_cb_run(receive_buffer_.data(), static_cast<size_t>(n), seq, portid_, callback, data);
    if (ret < 0) {
      int err = errno;
      throw Error(errc_of(err), what + ": " + strerror(err));
    }
    if (ret == MNL_CB_STOP) return;
  }
}

TableState NftSocket::read_table() {
  TableState state;
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  {
    TablePtr t(check_alloc(nftnl_table_alloc()));
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETTABLE, NFPROTO_IPV4, NLM_F_ACK, next_seq());
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    try {
      dump(NFT_MSG_GETTABLE, nlh, [](const nlmsghdr*, void*) { return MNL_CB_OK; }, nullptr, "read table");
    } catch (const Error& e) {
      if (e.code() == Errc::not_found) return state;
      throw;
    }
    state.exists = true;
  }
  std::set<std::string> chains, sets;
  {
    ChainPtr chain(check_alloc(nftnl_chain_alloc()));
    nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, kTable);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETCHAIN, NFPROTO_IPV4, NLM_F_DUMP, next_seq());
    nftnl_chain_nlmsg_build_payload(nlh, chain.get());
    dump(NFT_MSG_GETCHAIN, nlh, on_chain, &chains, "list chains");
  }
  {
    SetPtr set(check_alloc(nftnl_set_alloc()));
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTable);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETSET, NFPROTO_IPV4, NLM_F_DUMP, next_seq());
    nftnl_set_nlmsg_build_payload(nlh, set.get());
    dump(NFT_MSG_GETSET, nlh, on_set, &sets, "list sets");
  }
  state.legacy = sets.count(kLegacyVipMap) || !chains.count(kBalanceChain) || !sets.count(kVipAddressSet) ||
                 !sets.count(kBackendMap) || !sets.count(kHairpinSet);
  if (state.legacy) {
    for (const std::string& chain : chains) {
      if (auto n = buckets_of_legacy_chain(chain)) state.bucket_rules.insert(*n);
    }
  } else {
    RulePtr rule = new_rule(kBalanceChain);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETRULE, NFPROTO_IPV4, NLM_F_DUMP, next_seq());
    nftnl_rule_nlmsg_build_payload(nlh, rule.get());
    dump(NFT_MSG_GETRULE, nlh, on_balance_rule, &state.bucket_rules, std::string("list chain ") + kBalanceChain);
  }
  RawSets raw;
  for (const std::string& name : sets) {
    ElementsRead read{&raw, SetKind::addresses, 0};
    if (name == kVipAddressSet) {
      read.kind = SetKind::addresses;
    } else if (name == kBackendMap) {
      read.kind = SetKind::backends;
    } else if (name == kHairpinSet) {
      read.kind = SetKind::hairpin;
    } else if (name == kLegacyVipMap) {
      read.kind = SetKind::legacy_vips;
    } else if (auto n = buckets_of_set(name)) {
      read.kind = SetKind::members;
      read.buckets = *n;
    } else {
      continue;  // not ours
    }
    SetPtr set = new_set(name.c_str());
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), NFT_MSG_GETSETELEM, NFPROTO_IPV4, NLM_F_DUMP, next_seq());
    nftnl_set_elems_nlmsg_build_payload(nlh, set.get());
    dump(NFT_MSG_GETSETELEM, nlh, on_elements, &read, "list set " + name);
  }
  state.hairpin = std::move(raw.hairpin);

  // A VIP is its record (the comment, on @vip-addresses; on @vips in the
  // earlier shape), its N and its @backends elements.
  std::map<Ipv4Address, KeyAndBridge> records = std::move(raw.legacy_records);
  if (!state.legacy) {
    for (const auto& [vip, record] : raw.addresses) {
      if (record) records.emplace(vip, *record);
    }
  }
  for (const auto& [vip, record] : records) {
    KernelVip entry;
    entry.key = record.first;
    entry.vip = vip;
    entry.bridge = record.second;
    auto member = raw.members.find(vip);
    if (member != raw.members.end()) {
      entry.buckets = *member->second.begin();
      member->second.erase(member->second.begin());  // any other is an orphan
      if (member->second.empty()) raw.members.erase(member);
    }
    auto it = raw.backends.lower_bound({vip, 0});
    while (it != raw.backends.end() && it->first.first == vip) {
      entry.elements[it->first.second] = it->second;
      it = raw.backends.erase(it);
    }
    if (state.vips.emplace(entry.key, entry).second) {
      raw.addresses.erase(vip);
      continue;
    }
    // A second VIP with one key (by hand): an orphan, for sync to remove.
    if (entry.buckets) state.orphan_members[entry.buckets].insert(vip);
    for (const auto& [bucket, backend] : entry.elements) state.orphan_backends[vip].push_back(bucket);
  }
  for (const auto& [vip, record] : raw.addresses) state.orphan_addresses.insert(vip);
  for (const auto& [vip, all] : raw.members) {
    for (uint32_t n : all) state.orphan_members[n].insert(vip);
  }
  for (const auto& [key, backend] : raw.backends) state.orphan_backends[key.first].push_back(key.second);
  count_backends(state);
  return state;
}

void NftSocket::delete_table() {
  BatchBuilder builder(seq_);
  TablePtr t(check_alloc(nftnl_table_alloc()));
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, NFPROTO_IPV4);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable);
  nlmsghdr* nlh = builder.header(NFT_MSG_DELTABLE, 0, std::string("delete table ") + kTable);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  builder.done(nlh);
  seq_ = builder.next_seq() + 1;
  send_batch(mnl_socket_get_fd(sock_), builder, receive_buffer_, true);
}

}  // namespace swarmnet::lb::nft
