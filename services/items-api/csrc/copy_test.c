/* Checks items_api_copy (copy.c) against a byte-wise copy: every length from 0
 * to 1100 at every source and destination alignment to 16, and long copies
 * (the 32-byte loop's and rep movsb's sizes), each with guard bytes on both
 * sides that must stay untouched. Exits 0, or 1 naming the first mismatch.
 * Run by tests/copy.rs, built with the flags build.rs uses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *items_api_copy(void *dest, const void *src, size_t n);

static unsigned char src[140000], dst[140000];

static int check(size_t n, size_t s_off, size_t d_off) {
    for (size_t i = 0; i < n + 64; i++)
        src[i] = (unsigned char)(i * 131 + n + s_off * 7);
    for (size_t i = 0; i < n + 96; i++)
        dst[i] = 0xA5;
    void *returned = items_api_copy(dst + 32 + d_off, src + s_off, n);
    if (returned != dst + 32 + d_off) {
        printf("length %zu: returned another pointer\n", n);
        return 1;
    }
    for (size_t i = 0; i < n + 96; i++) {
        int inside = i >= 32 + d_off && i < 32 + d_off + n;
        unsigned char want = inside ? src[s_off + i - 32 - d_off] : 0xA5;
        if (dst[i] != want) {
            printf("length %zu, source +%zu, destination +%zu: byte %zu is %u, not %u\n", n, s_off, d_off, i,
                   dst[i], want);
            return 1;
        }
    }
    return 0;
}

int main(void) {
    for (size_t n = 0; n <= 1100; n++)
        for (size_t s_off = 0; s_off < 16; s_off++)
            for (size_t d_off = 0; d_off < 16; d_off++)
                if (check(n, s_off, d_off))
                    return 1;
    size_t long_ones[] = {2047, 2048, 2049, 4096 + 17, 65536, 131072 + 5};
    for (size_t i = 0; i < sizeof long_ones / sizeof long_ones[0]; i++)
        for (size_t off = 0; off < 16; off += 5)
            if (check(long_ones[i], off, 15 - off))
                return 1;
    /* A forward copy into an overlapping source's lower part (musl's memmove
     * calls __memcpy_fwd, this function, for it). */
    size_t overlapping[] = {1, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 100, 1000, 2048, 5000};
    for (size_t i = 0; i < sizeof overlapping / sizeof overlapping[0]; i++) {
        size_t n = overlapping[i];
        for (size_t shift = 1; shift <= 40; shift++) {
            for (size_t j = 0; j < n + shift; j++)
                src[j] = (unsigned char)(j * 37 + shift);
            memcpy(dst, src, n + shift); /* libc's, the expected bytes */
            items_api_copy(src, src + shift, n);
            for (size_t j = 0; j < n; j++) {
                if (src[j] != dst[j + shift]) {
                    printf("overlapping length %zu, shift %zu: byte %zu is %u, not %u\n", n, shift, j, src[j],
                           dst[j + shift]);
                    return 1;
                }
            }
        }
    }
    puts("items_api_copy: every length and alignment copied exactly");
    return 0;
}
