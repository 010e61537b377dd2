/* bind-shim: pin Orthanc's listening sockets to the configured addresses.
 *
 * Orthanc 1.10.1 has no bind-address option: its HTTP server (CivetWeb) and its DICOM
 * server (DCMTK) bind 0.0.0.0. `archive serve` compiles this file (cc, once per serve,
 * into HOME/run) and starts Orthanc with LD_PRELOAD pointing at it and
 * ARCHIVE_BIND_MAP="PORT=ADDRESS,PORT=ADDRESS": a bind() of a wildcard address
 * (0.0.0.0 or ::) to one of those ports binds ADDRESS instead, so the kernel never
 * accepts a connection for that port on another interface. An IPv6 wildcard bind to a
 * mapped port is refused (EADDRNOTAVAIL) rather than left open. Every other bind() is
 * passed through unchanged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static int mapped_address(unsigned port, struct in_addr *out)
{
    const char *map = getenv("ARCHIVE_BIND_MAP");
    char entry[64];
    while (map && *map) {
        size_t n = strcspn(map, ",");
        if (n > 0 && n < sizeof(entry)) {
            char *eq;
            memcpy(entry, map, n);
            entry[n] = '\0';
            eq = strchr(entry, '=');
            if (eq) {
                *eq = '\0';
                if ((unsigned)strtoul(entry, NULL, 10) == port)
                    return inet_pton(AF_INET, eq + 1, out) == 1 ? 1 : -1;
            }
        }
        map += n;
        if (*map == ',')
            map++;
    }
    return 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static bind_fn real_bind;
    if (!real_bind)
        real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, addr, sizeof(in));
        if (in.sin_addr.s_addr == htonl(INADDR_ANY)) {
            int found = mapped_address(ntohs(in.sin_port), &in.sin_addr);
            if (found < 0) {
                errno = EADDRNOTAVAIL;
                return -1;
            }
            if (found > 0)
                return real_bind(fd, (const struct sockaddr *)&in, sizeof(in));
        }
    } else if (addr && addr->sa_family == AF_INET6
               && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        struct in_addr unused;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)
            && mapped_address(ntohs(in6->sin6_port), &unused) != 0) {
            errno = EADDRNOTAVAIL;
            return -1;
        }
    }
    return real_bind(fd, addr, len);
}
