/* `kekfs status`: the same text from the daemon and from an unmounted volume. */
#include "status.h"

#include <time.h>

#include "../crypto/aead.h"

/* Times in status are UTC to the minute: one clock for every host that reads them. */
static void print_time(FILE *out, uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
	fputs(buf, out);
}

/* The re-wrap since the mount: running (progress, ETA), finished (counts), or none. */
static void rewrap_status_print(FILE *out, struct rotation *rot)
{
	struct rotation_status st;
	double rate;

	rotation_get_status(rot, &st);
	if (st.target == 0) {
		fputs("re-wrap: none since mount\n", out);
		return;
	}
	rate = st.elapsed > 0 ? (double)st.done / st.elapsed : 0;
	if (st.running) {
		fprintf(out, "re-wrap: running to v%u: %llu of %llu files (%.0f%%), %.0f files/s",
			st.target, (unsigned long long)st.done, (unsigned long long)st.total,
			st.total ? 100.0 * (double)st.done / (double)st.total : 0.0, rate);
		if (rate > 0 && st.total >= st.done)
			fprintf(out, ", ETA %.0f s", (double)(st.total - st.done) / rate);
		fputc('\n', out);
		return;
	}
	fprintf(out,
		"re-wrap: finished to v%u: %llu files, %llu re-wrapped, %llu failed, name key %s, "
		"%.1f s\n",
		st.target, (unsigned long long)st.done, (unsigned long long)st.rewrapped,
		(unsigned long long)st.failed, st.name_key_done ? "done" : "NOT done", st.elapsed);
}

/* "rotation policy: every 90 days; next due 2027-02-20 (in 89 days)", or OVERDUE. */
static void policy_print(FILE *out, const struct keyring *kr)
{
	uint64_t period = keyring_rotation_period(kr), due = keyring_rotation_due(kr);
	uint64_t now = (uint64_t)time(NULL);

	if (!period) {
		fputs("rotation policy: none ('kekfs keys policy --rotate-every 90d' sets one)\n",
		      out);
		return;
	}
	fprintf(out, "rotation policy: every %llu s (%.1f days); next due ",
		(unsigned long long)period, (double)period / 86400.0);
	print_time(out, due);
	if (due <= now)
		fprintf(out, " -- OVERDUE by %llu s\n", (unsigned long long)(now - due));
	else
		fprintf(out, " (in %.1f days)\n", (double)(due - now) / 86400.0);
}

void volume_status_print(FILE *out, const struct volume_status *info)
{
	char hex[KEK_CHECK_HEX];
	struct kek_info k;

	fprintf(out, "backing: %s\n", info->backing);
	fprintf(out, "mounted on: %s\n", info->mountpoint ? info->mountpoint : "(not mounted)");
	fprintf(out, "cipher: %s, chunk size %u\n", aead_cipher_name(info->vol->cipher),
		1u << info->vol->chunk_shift);
	fprintf(out, "keyring generation: %llu\n",
		(unsigned long long)keyring_generation(info->kr));
	for (size_t i = 0; i < keyring_kek_count(info->kr); i++) {
		keyring_kek_info(info->kr, i, &k);
		fprintf(out, "KEK v%u: %s, created ", k.version,
			kek_state_name((enum kek_state)k.state));
		print_time(out, k.created);
		fprintf(out, ", %s", kek_origin_name(k.origin));
		keyring_kek_check_hex(info->kr, k.version, hex);
		if (hex[0])
			fprintf(out, ", check %s", hex);
		fputc('\n', out);
	}
	fprintf(out, "name key: on KEK v%u\n", info->vol->cur.kek_version);
	policy_print(out, info->kr);
	if (info->rot)
		rewrap_status_print(out, info->rot);
}
