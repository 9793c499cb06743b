#!/bin/bash
# Reachability lab for the WebRTC path: two hosts behind two NAT routers and a "public" segment
# with the agentferry relay and coturn, in network namespaces named PREFIX-*, on documentation
# addresses only (RFC 5737), never a real network. Needs root (or CAP_NET_ADMIN), ip, nft.
#
#   natlab.sh PREFIX up                  build it (no NAT rules yet)
#   natlab.sh PREFIX nat ROUTER MODE     ROUTER: A|B; MODE:
#       eim        endpoint-independent mapping (full-cone style: one external port per
#                  internal socket, for every destination), address-and-port-dependent filter
#       symmetric  masquerade random: a new external port per destination (hole punching fails)
#       noudp      eim, and every UDP packet forwarded through the router dropped
#   natlab.sh PREFIX down                tear it down
#
# Layout: PREFIX-pub: bridge 203.0.113.1/24 (relay and coturn listen here).
#         PREFIX-natA: wan 203.0.113.11, lan 198.51.100.1 -> PREFIX-hostA 198.51.100.2
#         PREFIX-natB: wan 203.0.113.12, lan 192.0.2.1    -> PREFIX-hostB 192.0.2.2
# Plain masquerade does not keep the external port per destination, so it cannot be hole
# punched; the eim recipe (an nftables dynamic map) is from n0-computer/patchbay.
set -euo pipefail
P=$1
cmd=$2
shift 2

up() {
  for n in pub natA natB hostA hostB; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
  ip -n "$P-pub" link add br0 type bridge
  ip -n "$P-pub" addr add 203.0.113.1/24 dev br0
  ip -n "$P-pub" link set br0 up
  # coturn drops allocations (437) when it has no route at all; the default goes nowhere real.
  ip -n "$P-pub" route add default dev br0
  local i=11
  for r in A B; do
    ip -n "$P-pub" link add "wan$r" type veth peer name wan netns "$P-nat$r"
    ip -n "$P-pub" link set "wan$r" master br0 up
    ip -n "$P-nat$r" addr add "203.0.113.$i/24" dev wan
    ip -n "$P-nat$r" link set wan up
    ip netns exec "$P-nat$r" sysctl -qw net.ipv4.ip_forward=1
    i=$((i + 1))
  done
  ip -n "$P-natA" link add lan type veth peer name eth0 netns "$P-hostA"
  ip -n "$P-natB" link add lan type veth peer name eth0 netns "$P-hostB"
  ip -n "$P-natA" addr add 198.51.100.1/24 dev lan; ip -n "$P-natA" link set lan up
  ip -n "$P-natB" addr add 192.0.2.1/24 dev lan;    ip -n "$P-natB" link set lan up
  ip -n "$P-hostA" addr add 198.51.100.2/24 dev eth0; ip -n "$P-hostA" link set eth0 up
  ip -n "$P-hostA" route add default via 198.51.100.1
  ip -n "$P-hostB" addr add 192.0.2.2/24 dev eth0; ip -n "$P-hostB" link set eth0 up
  ip -n "$P-hostB" route add default via 192.0.2.1
}

nat() {
  local router=$1 mode=$2 wan
  case $router in A) wan=203.0.113.11 ;; B) wan=203.0.113.12 ;; *) echo "router A or B" >&2; exit 2 ;; esac
  local ns="$P-nat$router" udp_drop=""
  [ "$mode" = noudp ] && udp_drop='meta l4proto udp drop'
  ip netns exec "$ns" nft flush ruleset
  case $mode in
    eim|noudp) ip netns exec "$ns" nft -f - <<NFT
table ip nat {
  map fullcone {
    type inet_service : ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 300s
    size 65536
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan" meta l4proto udp dnat ip to udp dport map @fullcone
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" meta l4proto udp update @fullcone { udp sport timeout 300s : ip saddr . udp sport }
    oifname "wan" snat ip to $wan
  }
}
table ip filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    $udp_drop
    iifname "lan" accept
    iifname "wan" ct state established,related accept
  }
}
NFT
    ;;
    symmetric) ip netns exec "$ns" nft -f - <<NFT
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade random
  }
}
table ip filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    iifname "lan" accept
    iifname "wan" ct state established,related accept
  }
}
NFT
    ;;
    *) echo "mode: eim, symmetric or noudp" >&2; exit 2 ;;
  esac
}

down() { for n in pub natA natB hostA hostB; do ip netns del "$P-$n" 2>/dev/null || true; done; }

case $cmd in
  up) up ;;
  nat) nat "$@" ;;
  down) down ;;
  *) echo "usage: natlab.sh PREFIX up|nat ROUTER MODE|down" >&2; exit 2 ;;
esac
