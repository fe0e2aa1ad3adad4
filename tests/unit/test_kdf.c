/* Unit tests for crypto/kdf's one list of labels: every label is there, named as the format
 * says, and no two are alike, so no two purposes can ever share a subkey. */
#include "testutil.h"

#include "../../crypto/kdf.h"

/* Each label is "kekfs ... vN", and none repeats (a repeat would merge two purposes). */
static void test_labels_are_distinct_and_versioned(void **state)
{
	(void)state;
	for (int i = 0; i < KDF_LABEL_COUNT; i++) {
		const char *s = kdf_label_string((enum kdf_label)i);
		size_t n;

		assert_non_null(s);
		n = strlen(s);
		assert_true(strncmp(s, "kekfs ", 6) == 0);
		assert_true(n > 9 && s[n - 3] == ' ' && s[n - 2] == 'v' && s[n - 1] >= '1' &&
			    s[n - 1] <= '9');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(s, kdf_label_string((enum kdf_label)j));
	}
	assert_null(kdf_label_string(KDF_LABEL_COUNT));
}

/* Two labels under one key give two unrelated subkeys; the same label gives the same. */
static void test_subkeys_differ_by_label(void **state)
{
	uint8_t key[KDF_KEY_LEN] = {7}, a[64], b[64], c[64];

	(void)state;
	kdf_subkey(key, KDF_LABEL_NAME_SIV, a, sizeof(a));
	kdf_subkey(key, KDF_LABEL_XATTR_NAME_SIV, b, sizeof(b));
	kdf_subkey(key, KDF_LABEL_NAME_SIV, c, sizeof(c));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_equal(a, c, sizeof(a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_labels_are_distinct_and_versioned),
	    cmocka_unit_test(test_subkeys_differ_by_label),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
