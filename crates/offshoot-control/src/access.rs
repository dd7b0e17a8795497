//! Team-only previews: an application's bypass token, for CI and end-to-end tools to reach its
//! environments. Sealed through `Ports`; made on first ask, replaced by `--rotate`.

use crate::gate::{Noted, Operation, Role, gate};
use crate::{Control, ControlError, Ports};

/// The context an application's bypass token is sealed with.
pub fn bypass_context(app: &str) -> String {
    format!("bypass/{app}")
}

impl<P: Ports> Control<'_, P> {
    /// The application's bypass token (an admin's to see): made on first ask, or new with
    /// `rotate` (the old one stops working).
    pub async fn bypass_token(&self, app: &str, rotate: bool) -> Result<String, ControlError> {
        // Showing the one there is: a read, an admin's.
        if !rotate && self.actor.role >= Role::Admin {
            let git = self.app_git(app).await?;
            if let Some(sealed) = &git.bypass_token {
                return self.ports.unseal(sealed, &bypass_context(app)).map_err(ControlError::Seal);
            }
        }
        let work = async {
            self.app_git(app).await?;
            let token = format!("osb_{}", crate::ids::random_hex::<24>());
            let sealed = self.ports.seal(&token, &bypass_context(app)).map_err(ControlError::Seal)?;
            self.store.set_bypass_token(app, &sealed).await?;
            Ok(token)
        };
        gate(self.store, &self.actor, Operation::RotateBypass, app, work, |_| Noted::default()).await
    }
}
