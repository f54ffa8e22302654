// A private header of the fake engine.
#pragma once
