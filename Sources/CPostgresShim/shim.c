// CPostgresShim has no code of its own: the header makes libpq importable.
#include "CPostgresShim.h"
