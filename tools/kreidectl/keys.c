/* keygen and token: the install's token-signing key, and bearer tokens
 * signed with it for operators who hold the key. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kr_id.h"
#include "kr_jwt.h"
#include "kreidectl.h"

static int keygen_usage(void)
{
    fprintf(stderr, "usage: kreidectl keygen [--alg ES256|RS256] [--if-missing] DIR [KID]\n");
    return CTL_EXIT_USAGE;
}

/* Whether DIR already holds a private key that signs `alg`. A directory
 * that does not exist or holds no key file holds none; one whose files do
 * not load is an error (-1), so that a broken key is not papered over. */
static int dir_can_sign(const char *dir, const char *alg)
{
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        return 0;
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[256];
    int rv = kr_jwt_keyset_load_dir(ks, dir, err, sizeof(err));
    int out = rv == KR_JWT_OK ? kr_jwt_keyset_can_sign(ks, alg) : rv == KR_JWT_ENOKEY ? 0 : -1;
    if (out < 0)
        fprintf(stderr, "kreidectl: %s\n", err);
    kr_jwt_keyset_free(ks);
    return out;
}

int ctl_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"alg", required_argument, NULL, 'a'},
        {"if-missing", no_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    const char *alg = "ES256";
    bool if_missing = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            alg = optarg;
            break;
        case 'm':
            if_missing = true;
            break;
        default:
            return keygen_usage();
        }
    }
    bool rsa = strcmp(alg, "RS256") == 0;
    if (!rsa && strcmp(alg, "ES256") != 0) {
        fprintf(stderr, "kreidectl: --alg must be ES256 or RS256\n");
        return CTL_EXIT_USAGE;
    }
    if (argc - optind < 1 || argc - optind > 2)
        return keygen_usage();
    const char *dir = argv[optind];
    char kid[64];
    if (argc - optind == 2) {
        snprintf(kid, sizeof(kid), "%s", argv[optind + 1]);
    } else {
        /* RSA keys get their own prefix, so that one can tell them apart
         * in the directory; the EC key signs by default either way. */
        time_t now = time(NULL);
        strftime(kid, sizeof(kid), rsa ? "rsa%Y%m%d%H%M%S" : "k%Y%m%d%H%M%S", gmtime(&now));
    }
    for (const char *p = kid; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
            fprintf(stderr, "kreidectl: a key id may only hold letters, digits, '-' and '_'\n");
            return CTL_EXIT_USAGE;
        }
    }
    if (if_missing) {
        int have = dir_can_sign(dir, alg);
        if (have < 0)
            return CTL_EXIT_USAGE;
        if (have > 0)
            return CTL_EXIT_OK;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kreidectl: %s: %s\n", dir, strerror(errno));
        return CTL_EXIT_USAGE;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
    char *pem = NULL;
    if ((rsa ? kr_jwt_generate_rs256_pem(&pem) : kr_jwt_generate_es256_pem(&pem)) != 0) {
        fprintf(stderr, "kreidectl: cannot generate a key\n");
        return CTL_EXIT_USAGE;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "kreidectl: %s: %s\n", path, strerror(errno));
        free(pem);
        return CTL_EXIT_USAGE;
    }
    size_t len = strlen(pem);
    bool ok = write(fd, pem, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    free(pem);
    if (!ok) {
        fprintf(stderr, "kreidectl: cannot write %s\n", path);
        unlink(path);
        return CTL_EXIT_USAGE;
    }
    printf("%s\n", kid);
    return CTL_EXIT_OK;
}

int ctl_mint_token(const char *keys_dir, const char *issuer, const char *audience, const char *sub, json_t *roles, json_t *schools,
                   const char *scope, long ttl, char **out, char *err, size_t errlen)
{
    *out = NULL;
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    if (kr_jwt_keyset_load_dir(ks, keys_dir, err, errlen) != 0) {
        kr_jwt_keyset_free(ks);
        return -1;
    }
    kr_uuid_str fresh, jti;
    if (sub == NULL) {
        kr_uuid7_new(&fresh);
        sub = fresh.s;
    }
    kr_uuid7_new(&jti);
    json_t *extra = json_pack("{s:O, s:O}", "roles", roles, "schools", schools);
    kr_jwt_claims claims = {
        .iss = (char *)issuer,
        .sub = (char *)sub,
        .aud = (char *)audience,
        .jti = jti.s,
        .scope = (char *)scope,
        .exp = (int64_t)time(NULL) + ttl,
        .extra = extra,
    };
    int rv = kr_jwt_sign(ks, &claims, out);
    json_decref(extra);
    kr_jwt_keyset_free(ks);
    if (rv != KR_JWT_OK) {
        snprintf(err, errlen, "cannot sign: %s", kr_jwt_strerror(rv));
        *out = NULL;
        return -1;
    }
    return 0;
}

static int token_usage(void)
{
    fprintf(stderr, "usage: kreidectl token [--sub ID] [--role ROLE]... [--school ID[:ROLE[+ROLE]]]... [--scope S]\n"
                    "                       [--ttl SECONDS] [--keys DIR]\n");
    return CTL_EXIT_USAGE;
}

int ctl_cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"sub", required_argument, NULL, 's'},
        {"role", required_argument, NULL, 'r'},
        {"school", required_argument, NULL, 'S'},
        {"scope", required_argument, NULL, 'c'},
        {"ttl", required_argument, NULL, 't'},
        {"keys", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0},
    };
    const char *keys = getenv("KREIDE_JWT_KEYS_DIR"), *scope = NULL, *sub = NULL;
    const char *issuer = getenv("KREIDE_ISSUER") ? getenv("KREIDE_ISSUER") : "http://127.0.0.1:8080";
    const char *audience = getenv("KREIDE_JWT_AUDIENCE") ? getenv("KREIDE_JWT_AUDIENCE") : "kreide";
    long ttl = 3600;
    json_t *roles = json_array(), *schools = json_array();
    int c, rc = CTL_EXIT_USAGE;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!kr_uuid_valid(optarg)) {
                fprintf(stderr, "kreidectl: --sub must be a UUID\n");
                goto out;
            }
            sub = optarg;
            break;
        case 'r':
            json_array_append_new(roles, json_string(optarg));
            break;
        case 'S': {
            char *colon = strchr(optarg, ':');
            json_t *sr = json_array();
            if (colon != NULL) {
                *colon = '\0';
                char *save = NULL;
                for (char *r = strtok_r(colon + 1, "+", &save); r; r = strtok_r(NULL, "+", &save))
                    json_array_append_new(sr, json_string(r));
            }
            if (!kr_uuid_valid(optarg)) {
                fprintf(stderr, "kreidectl: --school needs a school UUID\n");
                json_decref(sr);
                goto out;
            }
            json_array_append_new(schools, json_pack("{s:s, s:o}", "school_id", optarg, "roles", sr));
            break;
        }
        case 'c':
            scope = optarg;
            break;
        case 't':
            ttl = strtol(optarg, NULL, 10);
            if (ttl < 1 || ttl > 86400 * 30) {
                fprintf(stderr, "kreidectl: --ttl must be 1..2592000 seconds\n");
                goto out;
            }
            break;
        case 'k':
            keys = optarg;
            break;
        default:
            rc = token_usage();
            goto out;
        }
    }
    if (optind != argc) {
        rc = token_usage();
        goto out;
    }
    if (keys == NULL) {
        fprintf(stderr, "kreidectl: no key directory (--keys or KREIDE_JWT_KEYS_DIR)\n");
        goto out;
    }
    char err[256], *tok = NULL;
    if (ctl_mint_token(keys, issuer, audience, sub, roles, schools, scope, ttl, &tok, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreidectl: %s\n", err);
        goto out;
    }
    printf("%s\n", tok);
    free(tok);
    rc = CTL_EXIT_OK;
out:
    json_decref(roles);
    json_decref(schools);
    return rc;
}
