/*
 * podnet: one loopback address per pod, for the Ray pod runner of the test cluster (tests/cluster).
 *
 * On a real node every pod has its own network namespace: its processes bind 0.0.0.0 or 127.0.0.1 and
 * reach "localhost" without meeting another pod. Here the pods are processes on one machine, each given
 * its own loopback address (127.0.0.x, its status.podIP). Preloaded into every process of a pod
 * (LD_PRELOAD, inherited by children), this library turns that address into the pod's whole network:
 *   bind    to 0.0.0.0 / :: / 127.0.0.1 / ::1  ->  the pod's address
 *   connect to 0.0.0.0 / 127.0.0.1 / ::1       ->  the pod's address (the pod's own localhost)
 * so two Ray nodes can both listen on 6379, 8000 or 52365, and nothing a pod opens is reachable beyond
 * loopback. The address comes from PODNET_IP. Processes that do not use libc's bind/connect (static Go
 * binaries) are not covered; none runs in a Ray pod.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct in_addr pod_ip;
static int enabled;
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);

__attribute__((constructor)) static void podnet_init(void) {
    const char *ip = getenv("PODNET_IP");
    enabled = ip != NULL && inet_pton(AF_INET, ip, &pod_ip) == 1;
    real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
}

static int is_local4(in_addr_t addr, int any_too) {
    return addr == htonl(INADDR_LOOPBACK) || (any_too && addr == htonl(INADDR_ANY));
}

/* A copy of `addr` pointed at the pod's address when it names "here"; NULL when it is left alone. */
static const struct sockaddr *rewrite(const struct sockaddr *addr, socklen_t len, struct sockaddr_storage *out,
                                      int any_too) {
    if (!enabled || addr == NULL) return NULL;
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (!is_local4(in->sin_addr.s_addr, any_too)) return NULL;
        memcpy(out, addr, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)out)->sin_addr = pod_ip;
        return (const struct sockaddr *)out;
    }
    if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        int here = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || (any_too && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr));
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            in_addr_t v4;
            memcpy(&v4, &in6->sin6_addr.s6_addr[12], sizeof(v4));
            here = is_local4(v4, any_too);
        }
        if (!here) return NULL;
        /* ::ffff:<pod ip>: the IPv4-mapped form of the pod's address (dual-stack sockets accept it). */
        memcpy(out, addr, sizeof(struct sockaddr_in6));
        struct in6_addr *target = &((struct sockaddr_in6 *)out)->sin6_addr;
        memset(target, 0, sizeof(*target));
        target->s6_addr[10] = 0xff;
        target->s6_addr[11] = 0xff;
        memcpy(&target->s6_addr[12], &pod_ip, sizeof(pod_ip));
        return (const struct sockaddr *)out;
    }
    return NULL;
}

/* An IPv6-only socket cannot take an IPv4 address: keep it on ::1, loopback too (pods have no IPv6 of
 * their own; only such sockets with the same fixed port in two pods would meet). */
static const struct sockaddr *v6only_loopback(int fd, const struct sockaddr *addr, socklen_t len,
                                              struct sockaddr_storage *out) {
    int v6only = 0;
    socklen_t size = sizeof(v6only);
    if (!enabled || addr == NULL || addr->sa_family != AF_INET6 || len < (socklen_t)sizeof(struct sockaddr_in6))
        return NULL;
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &size) != 0 || !v6only) return NULL;
    if (!IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)addr)->sin6_addr)) return addr;
    memcpy(out, addr, sizeof(struct sockaddr_in6));
    ((struct sockaddr_in6 *)out)->sin6_addr = in6addr_loopback;
    return (const struct sockaddr *)out;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    struct sockaddr_storage copy;
    const struct sockaddr *to = v6only_loopback(fd, addr, len, &copy);
    if (to == NULL) to = rewrite(addr, len, &copy, 1);
    return real_bind(fd, to ? to : addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    struct sockaddr_storage copy;
    const struct sockaddr *to = rewrite(addr, len, &copy, 1);
    return real_connect(fd, to ? to : addr, len);
}
