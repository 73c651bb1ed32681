/*
 * memcpy for the image's static musl binary. musl's x86_64 memcpy moves a few
 * bytes with `movsb` one at a time around a `rep movsq`, whose start-up alone
 * costs tens of cycles: slow for the short copies a server makes all the time
 * (a header, a name, a timestamp). This one copies any size up to 64 bytes with
 * two to four overlapping unaligned loads and stores of constant size, which
 * the compiler turns into register moves, longer ones 32 bytes at a time, and
 * from 2 KiB on x86_64 with the CPU's `rep movsb`.
 *
 * `items_api_copy` is always built (tests/copy.rs runs csrc/copy_test.c, which
 * checks it against a byte-wise copy for every length to 1100 bytes at every
 * alignment, and a few long ones); `memcpy` itself is defined
 * only when ITEMS_API_MEMCPY is (build.rs: x86_64 musl), where it takes
 * the place of libc.a's in the static link. Built with
 * -fno-tree-loop-distribute-patterns and -fno-builtin so the loop below never
 * becomes a call to memcpy itself.
 */
#include <stddef.h>
#include <stdint.h>

/* Any alignment, and allowed to alias whatever the bytes hold. */
typedef struct { unsigned char b[16]; } __attribute__((may_alias)) chunk16;
typedef struct { unsigned char b[8]; } __attribute__((may_alias)) chunk8;
typedef struct { unsigned char b[4]; } __attribute__((may_alias)) chunk4;

#define LOAD(T, p) (*(const T *)(const void *)(p))
#define STORE(T, p, v) (*(T *)(void *)(p) = (v))

void *items_api_copy(void *dest, const void *src, size_t n) {
    unsigned char *d = dest;
    const unsigned char *s = src;
    if (n <= 16) {
        if (n >= 8) {
            chunk8 head = LOAD(chunk8, s), tail = LOAD(chunk8, s + n - 8);
            STORE(chunk8, d, head);
            STORE(chunk8, d + n - 8, tail);
        } else if (n >= 4) {
            chunk4 head = LOAD(chunk4, s), tail = LOAD(chunk4, s + n - 4);
            STORE(chunk4, d, head);
            STORE(chunk4, d + n - 4, tail);
        } else if (n > 0) {
            unsigned char first = s[0], middle = s[n / 2], last = s[n - 1];
            d[0] = first;
            d[n / 2] = middle;
            d[n - 1] = last;
        }
        return dest;
    }
    if (n <= 32) {
        chunk16 head = LOAD(chunk16, s), tail = LOAD(chunk16, s + n - 16);
        STORE(chunk16, d, head);
        STORE(chunk16, d + n - 16, tail);
        return dest;
    }
    if (n <= 64) {
        chunk16 a = LOAD(chunk16, s), b = LOAD(chunk16, s + 16);
        chunk16 c = LOAD(chunk16, s + n - 32), e = LOAD(chunk16, s + n - 16);
        STORE(chunk16, d, a);
        STORE(chunk16, d + 16, b);
        STORE(chunk16, d + n - 32, c);
        STORE(chunk16, d + n - 16, e);
        return dest;
    }
#if defined(__x86_64__)
    /* Long copies (a page of items, a grown buffer): the CPU's own string
     * copy, fast at these sizes, without musl's byte loops around it. */
    if (n >= 2048) {
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
        return dest;
    }
#endif
    /* The last 32 bytes first (they may overlap what the loop writes), then
     * whole 32-byte blocks from the start. */
    chunk16 last_a = LOAD(chunk16, s + n - 32), last_b = LOAD(chunk16, s + n - 16);
    for (size_t i = 0; i + 32 <= n; i += 32) {
        chunk16 a = LOAD(chunk16, s + i), b = LOAD(chunk16, s + i + 16);
        STORE(chunk16, d + i, a);
        STORE(chunk16, d + i + 16, b);
    }
    STORE(chunk16, d + n - 32, last_a);
    STORE(chunk16, d + n - 16, last_b);
    return dest;
}

#ifdef ITEMS_API_MEMCPY
void *memcpy(void *restrict dest, const void *restrict src, size_t n) {
    return items_api_copy(dest, src, n);
}

/* musl's x86_64 memmove calls __memcpy_fwd, which its memcpy object defines:
 * without it here the link would take that object and find memcpy twice. It
 * is a forward copy, also for a destination below an overlapping source:
 * every block is loaded before it is stored, and no store reaches a byte a
 * later load reads (tests: copy_test.c's overlapping copies). */
void *__memcpy_fwd(void *dest, const void *src, size_t n) {
    return items_api_copy(dest, src, n);
}
#endif
