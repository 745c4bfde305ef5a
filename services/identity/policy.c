/* Who may do what in the identity service. Every handler asks here before
 * it touches the store; nothing is decided by what a UI shows. */
#include <string.h>

#include "identity.h"

bool ident_is_operator(const Kreide__Caller *caller)
{
    if (caller->kind != KREIDE__CALLER__KIND__USER && caller->kind != KREIDE__CALLER__KIND__SERVICE)
        return false;
    for (size_t i = 0; i < caller->n_roles; i++) {
        if (strcmp(caller->roles[i], "operator") == 0)
            return true;
    }
    return false;
}

bool ident_may_create_school(const Kreide__Caller *caller)
{
    return ident_is_operator(caller);
}

bool ident_may_list_schools(const Kreide__Caller *caller)
{
    return ident_is_operator(caller);
}
