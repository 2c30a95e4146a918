// The kernel checks of `swarmnetctl doctor`. Each feature is tried through
// the interface swarmnetd uses, in one network namespace made for the
// purpose: a kernel config file or a module list can say a feature is there
// when it cannot be used (a module blacklisted, a namespace that lacks it),
// and the attempt cannot. The namespace is held only by its descriptor and
// the sockets opened in it, so it (with everything made in it) is gone when
// check_kernel() returns, or when the process dies.
#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>

#include "common/error.hpp"
#include "ctl/doctor.hpp"
#include "kernel/netlink.hpp"
#include "kernel/netns.hpp"
#include "kernel/nftables.hpp"
#include "kernel/vxlan.hpp"
#include "lb/ipvs_netlink.hpp"

namespace swarmnet::doctor {
namespace {

// An ESP security association with AES-GCM (what IPsec-encrypted overlays
// use, as Docker's encrypted networks do), added through XFRM netlink.
// Returns the kernel's errno, 0 on success.
int try_esp_state() {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
  if (fd < 0) return errno;
  struct Request {
    nlmsghdr header;
    xfrm_usersa_info sa;
    alignas(NLA_ALIGNTO) char attributes[256];
  } request{};
  xfrm_usersa_info& sa = request.sa;
  sa.family = AF_INET;
  sa.sel.family = AF_INET;
  inet_pton(AF_INET, "192.0.2.1", &sa.saddr.a4);
  inet_pton(AF_INET, "192.0.2.2", &sa.id.daddr.a4);
  sa.id.spi = htonl(0x5357);
  sa.id.proto = IPPROTO_ESP;
  sa.mode = XFRM_MODE_TRANSPORT;
  sa.reqid = 1;
  sa.lft.soft_byte_limit = sa.lft.hard_byte_limit = XFRM_INF;
  sa.lft.soft_packet_limit = sa.lft.hard_packet_limit = XFRM_INF;

  // rfc4106(gcm(aes)): a 128-bit key and a 32-bit salt, a 128-bit tag.
  constexpr size_t kKeyBytes = 20;
  auto* attr = reinterpret_cast<nlattr*>(request.attributes);
  auto* aead = reinterpret_cast<xfrm_algo_aead*>(reinterpret_cast<char*>(attr) + NLA_HDRLEN);
  std::strncpy(aead->alg_name, "rfc4106(gcm(aes))", sizeof(aead->alg_name) - 1);
  aead->alg_key_len = kKeyBytes * 8;
  aead->alg_icv_len = 128;
  for (size_t i = 0; i < kKeyBytes; ++i) aead->alg_key[i] = static_cast<char>(i + 1);
  attr->nla_type = XFRMA_ALG_AEAD;
  attr->nla_len = static_cast<uint16_t>(NLA_HDRLEN + sizeof(xfrm_algo_aead) + kKeyBytes);

  request.header.nlmsg_type = XFRM_MSG_NEWSA;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  request.header.nlmsg_seq = 1;
  request.header.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(xfrm_usersa_info)) + NLA_ALIGN(attr->nla_len));

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int result = 0;
  if (::sendto(fd, &request, request.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    result = errno;
  } else {
    alignas(nlmsghdr) char reply[1024];
    const ssize_t n = ::recv(fd, reply, sizeof(reply), 0);
    const auto* h = reinterpret_cast<const nlmsghdr*>(reply);
    if (n < 0) {
      result = errno;
    } else if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))) || h->nlmsg_type != NLMSG_ERROR) {
      result = EPROTO;
    } else {
      result = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
    }
  }
  ::close(fd);
  return result;
}

// What the nftables balancer, the firewall and the egress NAT ask of the
// kernel, in one transaction: nat hooks, DNAT through a map keyed by a
// flow hash, numgen, conntrack state, masquerade, interface wildcards.
constexpr const char* kNftProbe = R"(
add table ip swarmnet-doctor
add chain ip swarmnet-doctor probe-pre { type nat hook prerouting priority dstnat; }
add chain ip swarmnet-doctor probe-post { type nat hook postrouting priority srcnat; }
add chain ip swarmnet-doctor probe-forward { type filter hook forward priority filter - 10; }
add map ip swarmnet-doctor vips { type ipv4_addr : verdict; }
add rule ip swarmnet-doctor probe-pre ip daddr vmap @vips
add rule ip swarmnet-doctor probe-pre meta l4proto tcp dnat to jhash ip saddr . tcp sport mod 2 map { 0 : 192.0.2.1, 1 : 192.0.2.2 }
add rule ip swarmnet-doctor probe-pre meta l4proto udp dnat to numgen random mod 2 map { 0 : 192.0.2.1, 1 : 192.0.2.2 }
add rule ip swarmnet-doctor probe-post ip saddr 10.0.0.0/8 oifname != "swn-*" masquerade
add rule ip swarmnet-doctor probe-forward ct state established,related accept
add rule ip swarmnet-doctor probe-forward iifname "swn-*" udp dport 4789 drop
)";

Check attempt(const char* name, const std::function<std::string()>& probe, Status if_missing,
              const std::string& fix, const std::string& without) {
  Check c{"kernel", name, Status::ok, "", ""};
  try {
    c.detail = probe();
  } catch (const std::exception& e) {
    c.status = if_missing;
    // One line per check: nft's own messages go on with the offending
    // line and carets.
    c.detail = e.what();
    c.detail = c.detail.substr(0, c.detail.find('\n'));
    if (!without.empty()) c.detail += "; " + without;
    c.fix = fix;
  }
  return c;
}

}  // namespace

std::vector<Check> check_kernel() {
  std::optional<kernel::Netns> ns;
  std::string no_namespace;
  try {
    ns.emplace(kernel::Netns::create("doctor's throwaway namespace"));
  } catch (const std::exception& e) {
    no_namespace = e.what();
  }
  if (!ns) {
    return {Check{"kernel", "namespace", Status::missing, "cannot make a throwaway network namespace to try the kernel: " + no_namespace,
                  "run swarmnetctl doctor as root (swarmnetd needs the same)"}};
  }

  std::vector<Check> out;
  std::optional<kernel::NetlinkSocket> nl;
  auto netlink = [&]() -> kernel::NetlinkSocket& {
    if (!nl) nl.emplace(kernel::NetlinkSocket::open_in(*ns));
    return *nl;
  };

  out.push_back(attempt(
      "bridge",
      [&] {
        netlink().ensure_bridge("doctor-br", 1450);
        return std::string("created a bridge");
      },
      Status::missing, "modprobe bridge (CONFIG_BRIDGE)", ""));
  out.push_back(attempt(
      "veth",
      [&] {
        netlink().create_veth("doctor-v0", "doctor-v1", *ns, 1450, "");
        return std::string("created a veth pair");
      },
      Status::missing, "modprobe veth (CONFIG_VETH)", ""));
  out.push_back(attempt(
      "vxlan",
      [&] {
        kernel::VxlanConfig config;
        config.name = "doctor-vx";
        config.vni = 4242;
        config.mtu = 1450;
        config.bridge = "doctor-br";
        auto info = kernel::ensure_vxlan(netlink(), config);
        kernel::add_fdb(netlink(), info.link.index, "02:42:0a:00:00:02", Ipv4Address::parse("192.0.2.2"));
        return "created a VXLAN device (VNI 4242, UDP " + std::to_string(info.port) +
               ") with a static FDB entry, enslaved to a bridge";
      },
      Status::missing, "modprobe vxlan (CONFIG_VXLAN)", ""));
  out.push_back(attempt(
      "nftables",
      [&] {
        kernel::NftContext nft = kernel::NftContext::open_in(*ns);
        nft.run(kNftProbe);
        return std::string("created a table with nat hooks, a DNAT map by flow hash and numgen, conntrack and "
                           "masquerade rules");
      },
      Status::missing,
      "load nf_tables, nft_nat, nft_ct, nft_hash, nft_numgen, nft_masq, nf_nat, nf_conntrack (CONFIG_NF_TABLES and "
      "friends)",
      ""));
  out.push_back(attempt(
      "br_netfilter",
      [&] {
        {
          kernel::NetnsGuard guard(*ns);
          kernel::read_sysctl("net/bridge/bridge-nf-call-iptables");
        }
        // The namespace's own switch starts at 1; the host's is what
        // swarmnetd's bridges live under.
        if (kernel::read_sysctl("net/bridge/bridge-nf-call-iptables") != "1") {
          throw Error(Errc::unavailable,
                      "br_netfilter is loaded but net.bridge.bridge-nf-call-iptables is 0 on this host: a service's "
                      "replies to a client on the same network are not translated back from its VIP");
        }
        return std::string("bridged traffic passes nftables (net.bridge.bridge-nf-call-iptables = 1)");
      },
      Status::missing, "modprobe br_netfilter; sysctl -w net.bridge.bridge-nf-call-iptables=1", ""));
  out.push_back(attempt(
      "ipvs",
      [&] {
        kernel::NetnsGuard guard(*ns);
        auto ipvs = lb::IpvsSocket::open();
        ipvs.add_service(lb::IpvsService{1, "mh", lb::kIpvsMhPort});
        if (ipvs.fwmark_services().size() != 1) throw Error(Errc::internal, "IPVS took a service but does not list it");
        return std::string("created an IPVS service (fwmark, Maglev hashing) through generic netlink");
      },
      Status::optional_missing, "modprobe ip_vs ip_vs_mh (CONFIG_IP_VS, CONFIG_IP_VS_MH)",
      "still works: services are balanced by nftables instead (swarmnetd picks it at start)"));
  out.push_back(attempt(
      "esp",
      [&] {
        int err = 0;
        {
          kernel::NetnsGuard guard(*ns);
          err = try_esp_state();
        }
        if (err != 0) {
          throw Error(Errc::unavailable, std::string("the kernel refused an ESP state with AES-GCM (rfc4106(gcm(aes))): ") +
                                             std::strerror(err));
        }
        return std::string("created an ESP security association with AES-GCM through XFRM netlink");
      },
      Status::optional_missing, "modprobe esp4 (CONFIG_INET_ESP, CONFIG_CRYPTO_GCM)",
      "still works: every overlay feature swarmnet has; only IPsec encryption of overlay traffic (as Docker's "
      "encrypted networks) needs ESP; gossip is encrypted by swarmnetd itself"));
  return out;
}

}  // namespace swarmnet::doctor
