/* l_model.c -- model programs (placeholder while the model layer is written). */
#include "lutil.h"

void plm_l_open_model(lua_State *L)
{
    (void)L;
}
