/* kekfs keys create-token-key: the AES key a PKCS#11 slot needs, made inside the token. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../keyring/pkcs11_slot.h"
#include "cli.h"
#include "secret.h"

static const char token_usage[] =
    "Usage: kekfs keys create-token-key --pkcs11 'module=PATH;token=LABEL;key=LABEL'\n"
    "                                   [--pin-file F | --pin-credential NAME]\n"
    "\n"
    "Creates the AES-256 key named by key= in the token: sensitive, not extractable, kept on\n"
    "the token. 'kekfs keys add-slot --pkcs11 SPEC' then seals a volume's keyring with it.\n"
    "The PIN comes from --pin-file, a systemd credential, or the terminal.\n";

int cmd_token_key(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"pkcs11", required_argument, NULL, 'S'},
	    {"pin-file", required_argument, NULL, 'N'},
	    {"pin-credential", required_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct secret_source src = {0};
	struct kr_secret secret;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'S')
			src.pkcs11 = optarg;
		else if (c == 'N')
			src.pin_file = optarg;
		else if (c == 'C')
			src.pin_credential = optarg;
		else if (c == 'h')
			return fputs(token_usage, stdout), 0;
		else
			return cli_error("see 'kekfs keys create-token-key --help'"), 2;
	}
	if (!src.pkcs11 || optind != argc)
		return cli_error("create-token-key takes --pkcs11 SPEC and nothing else: see "
				 "'kekfs keys create-token-key --help'"),
		       2;
	if (secret_read(&src, 0, &secret) != 0)
		return 1;
	rc = pkcs11_create_key(secret.ext, src.pkcs11);
	if (rc != 0)
		cli_error("%s", secret.ext->msg);
	else
		printf("created key in the token: %s (AES-256, sensitive, not extractable)\n",
		       src.pkcs11);
	secret_free(&secret);
	return rc == 0 ? 0 : 1;
}
