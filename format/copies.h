/*
 * The keyring and the volume config each keep two copies in one file (docs/FORMAT.md): which
 * copy was bad when the file was read, the good one having been used.
 */
#ifndef KEKFS_COPIES_H
#define KEKFS_COPIES_H

#define COPY_1_BAD 1u
#define COPY_2_BAD 2u
#define COPY_SINGLE 4u /* a file of one copy, from before kekfs kept two: gains copy 2 */

#endif
