/* identity.c - participant roles and names, shared by the TLS layer and provisioning.
 *
 * A name ends up in a certificate subject, a directory name, a log field and an audit
 * record, so it is kept to a small alphabet that needs no escaping anywhere.
 */
#include "fv_tls.h"

#include <string.h>

const char *fv_role_name(fv_role_t role)
{
    switch (role) {
    case FV_ROLE_COORDINATOR:
        return "coordinator";
    case FV_ROLE_AGENT:
        return "agent";
    case FV_ROLE_ADMIN:
        return "admin";
    }
    return "unknown";
}

int fv_role_parse(const char *s, fv_role_t *ret)
{
    static const fv_role_t roles[] = {FV_ROLE_COORDINATOR, FV_ROLE_AGENT, FV_ROLE_ADMIN};
    if (s == NULL)
        return FV_EINVAL;
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        if (strcmp(s, fv_role_name(roles[i])) == 0) {
            *ret = roles[i];
            return 0;
        }
    }
    return FV_EINVAL;
}

bool fv_name_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > FV_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}
