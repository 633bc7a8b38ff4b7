/* hash: a 64-bit content hash for keys in the store (model weights,
 * calibration sets, configs): FNV-1a over 8-byte words with a final mix, so a
 * 5 GB checkpoint hashes at memory speed. Not cryptographic: it names content,
 * it does not defend against forgery. Tested in tests/test_ops.c. */
#ifndef UNETLAB_HASH_H
#define UNETLAB_HASH_H
#include <stddef.h>
#include <stdint.h>

#define HASH_INIT 0xcbf29ce484222325ull

uint64_t hash_bytes(uint64_t h, const void *data, size_t n);
/* 16 lowercase hex digits and a NUL. */
void hash_hex(uint64_t h, char out[17]);

#endif
