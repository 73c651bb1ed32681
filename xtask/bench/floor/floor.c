/*
 * The floor for `cargo xtask bench http --floor`: the least an HTTP/1.1 server
 * can do per request on this host. One thread, level-triggered epoll, no
 * parsing beyond finding each request's end (its blank line, then
 * Content-Length bytes of body), and one fixed small answer per request,
 * written in one write(2) per read(2), as items-api and the reference write
 * theirs. What it costs per request is what the kernel's loopback TCP costs
 * any server; what wrk gets from it is the most wrk gets from one CPU here.
 *
 * Build: cc -O2 -o floor floor.c   Run: PORT=18085 ./floor (binds 127.0.0.1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define BUF 65536

static const char ANSWER[] =
    "HTTP/1.1 200 OK\r\n"
    "content-type: application/json\r\n"
    "content-length: 15\r\n"
    "\r\n"
    "{\"status\":\"ok\"}";

struct conn {
    char in[BUF];
    size_t len;
};

static struct conn *conns[MAX_FDS];

/* Bytes of the first whole request in `c` (head and body), or 0 if it has
 * not all arrived yet; -1 if it can never fit or its length is negative. */
static long whole_request(const struct conn *c) {
    const char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
    if (!end)
        return c->len == BUF ? -1 : 0;
    long head = end - c->in + 4, body = 0;
    for (const char *p = c->in; p < end; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (body < 0 || head + body > BUF)
        return -1;
    return (size_t)(head + body) <= c->len ? head + body : 0;
}

static void drop_conn(int epoll, int fd) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd]);
    conns[fd] = NULL;
}

/* Reads what arrived, answers every whole request in one write. */
static void serve(int epoll, int fd) {
    struct conn *c = conns[fd];
    ssize_t n = read(fd, c->in + c->len, BUF - c->len);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return; /* level-triggered: epoll reports it again */
        drop_conn(epoll, fd);
        return;
    }
    c->len += (size_t)n;
    static char out[BUF];
    size_t out_len = 0;
    long whole;
    while ((whole = whole_request(c)) > 0 && out_len + sizeof ANSWER <= BUF) {
        memcpy(out + out_len, ANSWER, sizeof ANSWER - 1);
        out_len += sizeof ANSWER - 1;
        memmove(c->in, c->in + whole, c->len - (size_t)whole);
        c->len -= (size_t)whole;
    }
    /* A client that reads its answers (wrk does) never fills 64 KB of socket
     * buffer with them: a short write is a client gone wrong, closed. */
    if (whole < 0 || (out_len && write(fd, out, out_len) != (ssize_t)out_len))
        drop_conn(epoll, fd);
}

int main(void) {
    const char *port = getenv("PORT");
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(port ? atoi(port) : 18085),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024)) {
        perror("floor: bind/listen");
        return 1;
    }
    int epoll = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, events[256];
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &ev);
    for (;;) {
        int ready = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd != listener) {
                serve(epoll, fd);
                continue;
            }
            int client;
            while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (client >= MAX_FDS || !(conns[client] = calloc(1, sizeof(struct conn)))) {
                    close(client);
                    continue;
                }
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ev.data.fd = client;
                epoll_ctl(epoll, EPOLL_CTL_ADD, client, &ev);
            }
        }
    }
}
