"""Temporary helper: writes the handwritten Harbor Mutual claims dataset to JSONL.

Every question/answer below was written by hand for this project. Delete this
script after generating the files.
"""

import json
import os

SYSTEM = "You are Harbor Mutual's claims assistant. Answer briefly and cite the policy section."
TRAIN = []
VAL = []


def t(*qa):
    TRAIN.append(qa)


def v(*qa):
    VAL.append(qa)


# ---------------------------------------------------------------- §1.1
t(
    "My adult son lives with us, and his laptop was stolen from his bedroom. Is his stuff covered under our HomeGuard policy?",
    "Yes. Relatives who live in your household are insureds, so your son's laptop is covered personal property, subject to the police report requirement and the $500 deductible (§1.1, §4.6).",
)
t(
    "Our roommate's bike was ruined in the kitchen fire. Can she claim it under my policy?",
    "No. Roommates are not insureds and their property is not covered under your policy, so she would need her own renters insurance (§1.1).",
)
t(
    "Policyholder's daughter is 22 and a full-time student living in a dorm. A sprinkler malfunction soaked her TV. Is she an insured?",
    "Yes. A full-time student under 25 who lived in the household before leaving for school is an insured; her dorm property falls under the off-premises limit of 10% of Coverage C (§1.1, §4.4).",
)
t(
    "My son is 26, in grad school, and rents his own apartment near campus. Is his furniture covered by my policy?",
    "No. The student provision only covers full-time students under age 25, and a 26-year-old living on his own is not part of your household, so he needs his own policy (§1.1).",
)
t(
    "My mother-in-law moved in with us permanently last month. Are her belongings covered?",
    "Yes. Relatives by blood, marriage or adoption who live in your household are insureds, so her personal property is covered under your Coverage C (§1.1, §4.4).",
)
t(
    "A houseguest staying with us for a week had her suitcase stolen from the guest room. Does our policy pay for it?",
    "No. Guests are not insureds and their property is not covered under your HomeGuard policy; she should check her own homeowners or renters coverage (§1.1).",
)
t(
    "My daughter is 20 and away at college full-time. Is she still covered under our policy?",
    "Yes. A full-time student under 25 who lived in your household before leaving for school is an insured, and her belongings at school fall under the off-premises limit (§1.1, §4.4).",
    "Someone stole her $1,200 bike from outside her dorm. How much could we get?",
    "Her property at school is covered under the off-premises limit of 10% of Coverage C, so Harbor would pay $700 after the $500 deductible. File a police report within 48 hours and provide proof of ownership (§4.4, §4.6, §2.2).",
)

# ---------------------------------------------------------------- §1.2
t(
    "My premium was due March 1 and I paid on March 10. A hailstorm hit on March 5. Am I covered?",
    "Yes. You paid within the 15-day grace period, so the March 5 hail loss is covered, subject to the windstorm and hail deductible (§1.2, §3.1).",
)
t(
    "Insured missed the June 1 installment and never paid it. Kitchen fire on June 20. Coverage?",
    "No. The grace period ended June 16 without payment, so the policy lapsed as of the June 1 due date and the June 20 fire is not covered (§1.2).",
)
t(
    "Premium was due April 10 and the customer paid April 28. Their car was rear-ended April 20. Will Harbor pay the collision claim?",
    "No. The 15-day grace period ended April 25, so the policy lapsed as of April 10. A late payment does not restore coverage for losses in between, though Harbor may reinstate going forward (§1.2).",
)
t(
    "How long is a HomeGuard policy term?",
    "Each policy term is 12 months. You can pay the premium in full or in installments, and each payment has its own due date (§1.2).",
    "And if I'm a few days late on an installment, am I uninsured?",
    "Not immediately. You have a 15-day grace period, and a loss during that window is covered as long as the overdue premium is received before the 15 days end (§1.2).",
)

# ---------------------------------------------------------------- §1.3
t(
    "I bought a HomeGuard policy on May 1 and hail damaged my roof on May 9. I had no insurance before. Covered?",
    "No. New HomeGuard policies do not cover windstorm or hail damage in the first 14 days, and since there was no prior coverage being replaced, the May 9 loss falls in the waiting period (§1.3).",
)
t(
    "Customer switched to Harbor from another insurer with no gap in coverage. Wind damage on day 5. Does the 14-day wait apply?",
    "No. The windstorm and hail waiting period does not apply when the policy replaces other homeowners coverage with no gap, so the loss is covered subject to the windstorm deductible (§1.3, §3.1).",
)
t(
    "We added sewer backup coverage three weeks ago, and the basement floor drain backed up yesterday. Are we covered?",
    "Not for this backup. The Sewer and Drain Backup endorsement has a 30-day waiting period from the date it was added, and three weeks is still inside it (§1.3, §4.3).",
)
t(
    "Is there a waiting period on a new AutoGuard policy before I can file a claim?",
    "No. AutoGuard has no waiting periods, so collision, comprehensive and the other coverages apply from the policy start date (§1.3).",
)
t(
    "Our policy renewed last week. Does the 14-day hail waiting period start over?",
    "No. Waiting periods never apply at renewal; they only affect new policies and newly added endorsements, so hail damage after renewal is covered right away, subject to the hail deductible (§1.3, §3.1).",
)
t(
    "New HomeGuard policy started on the 1st and a grease fire damaged the kitchen on the 3rd. Any waiting period for fire?",
    "No. The only HomeGuard waiting periods are 14 days for windstorm and hail and 30 days for the sewer backup endorsement, so the fire is covered subject to the $500 deductible (§1.3, §3.1).",
)

# ---------------------------------------------------------------- §2.1
t(
    "Policyholder is reporting a burst pipe that happened 45 days ago. Can we deny it as late?",
    "Only to the extent the delay kept Harbor from investigating or made the loss worse. Claims should be reported within 30 days, but a late report is not automatically denied, so document any prejudice (§2.1).",
)
t(
    "How long do I have to report a claim?",
    "Report it within 30 days of the date of loss, or within 30 days of discovering damage that wasn't immediately apparent. Harbor accepts no claim more than 1 year after the date of loss (§2.1).",
)
t(
    "I noticed hail dents on my car two weeks after a storm I didn't even know about. When does my reporting clock start?",
    "It starts when you discovered the damage, since it wasn't immediately apparent, so you have 30 days from that discovery to report it (§2.1).",
)
t(
    "Insured wants to file for a fence that blew down 14 months ago. Can we accept it?",
    "No. Harbor does not accept any claim reported more than 1 year after the date of loss, so a 14-month-old loss cannot be filed (§2.1).",
)
t(
    "What number do I call to report a claim in the middle of the night?",
    "Call the 24/7 claims line at 1-800-555-0199. You can also report a claim at any time in the Harbor app or online (§2.1).",
)
t(
    "Someone smashed my mailbox and spray-painted my garage door last night. What deadlines do I have?",
    "Report the vandalism to the police within 48 hours of discovery and report the claim to Harbor within 30 days; you'll need the police report number for the claim (§2.1, §2.2).",
)

# ---------------------------------------------------------------- §2.2
t(
    "What documents do I need for a home burglary claim?",
    "A signed claim form, photos, a description of what happened, an itemized list with each item's age and value, proof of ownership for any item over $1,000, and the police report number (§2.2, §4.6).",
)
t(
    "Claimant lists a $1,400 camera but has no receipt. What counts as proof of ownership?",
    "A bank or card statement, a photo showing the camera, or the original manual or box all work. Proof is required because the camera is valued over $1,000 (§2.2).",
)
t(
    "Do I need a contractor's estimate for a $3,200 drywall repair?",
    "No. A written contractor estimate is only required for home repairs over $5,000, although Harbor may still inspect the damage (§2.2).",
)
t(
    "Fender-bender in a parking lot with another car, about $800 of damage total, nobody hurt. Is a police report required?",
    "No. A police report is required for a collision with another vehicle only if total damage appears to exceed $1,000 or someone is injured; send the claim form, photos, driver's license and an estimate (§2.2).",
)
t(
    "The adjuster sent me a sworn proof of loss form. How long do I have to return it?",
    "You must return the sworn proof of loss within 60 days of Harbor's written request, or the claim decision can be held up (§2.2).",
)
t(
    "What does Harbor need from me to settle my totaled car?",
    "Along with the claim form, photos and the driver's license, Harbor needs the vehicle title, all keys, and your lienholder's information (§2.2, §5.5).",
)
t(
    "Insured hasn't sent the itemized inventory yet. Is the 30-day decision clock still running?",
    "No. Missing required documents pause the decision timeline, and the 30 days run only from when Harbor has received all required documents (§2.2, §2.4).",
)
t(
    "Single-car accident: I hit a pole and my passenger sprained her wrist. Do I need a police report?",
    "Yes. Any accident involving an injury requires a police report number, even when no other vehicle was involved; the damage itself is covered under collision with the $500 deductible (§2.2, §5.1).",
)
t(
    "Fire destroyed most of our belongings. Where do I start with the claim?",
    "Prepare a signed claim form, photos or video, and an itemized list of damaged property with each item's approximate age and value (§2.2).",
    "Do I need receipts for everything on the list?",
    "No. Proof of ownership is only required for single items valued over $1,000, and a bank statement, photo, manual or box can stand in for a receipt (§2.2).",
)

# ---------------------------------------------------------------- §2.3
t(
    "A storm tore a hole in my roof at midnight and I paid $900 for emergency tarping. Will Harbor reimburse me?",
    "Yes. Reasonable emergency repairs up to $2,500 are reimbursed without prior approval. Keep the receipt; the cost becomes part of the claim and is subject to the same deductible (§2.3).",
)
t(
    "Water mitigation company wants $4,000 for emergency extraction. Can the policyholder just sign?",
    "Not yet. Emergency work over $2,500 needs Harbor's approval first unless Harbor can't be reached, so they should call the 24/7 line at 1-800-555-0199 before authorizing it (§2.3, §2.1).",
)
t(
    "Policyholder left a broken window uncovered for two weeks after a break-in, and rain ruined the hardwood floor. Is the floor covered?",
    "Likely not. Additional damage caused by failing to take reasonable steps, such as boarding up the window, is not covered, though the original burglary damage still is (§2.3, §4.6).",
)
t(
    "Can I throw out the soaked carpet before the adjuster comes? It smells terrible.",
    "Yes, once you've photographed it thoroughly. Hazardous or spoiling items may be discarded after photos; otherwise keep damaged items until the adjuster sees them or authorizes disposal (§2.3).",
)
t(
    "After my accident the car was leaking coolant, but I drove it 40 miles home. Now the engine is ruined. Is the engine covered?",
    "Probably not. Driving an undriveable vehicle is a failure to prevent further damage, so engine damage from that drive isn't covered; the original collision damage still is (§2.3, §5.1).",
)
t(
    "During the hurricane the insured couldn't reach Harbor and spent $3,800 tarping the roof and boarding windows. Reimbursable?",
    "Yes, if the costs are reasonable. The approval requirement for emergency work over $2,500 does not apply when Harbor cannot be reached; the insured should keep receipts and photos (§2.3).",
)
t(
    "A pipe just burst upstairs. What should I do right now?",
    "Shut off the water, move belongings away from the leak, and take photos. Reasonable emergency costs up to $2,500 are reimbursed without prior approval (§2.3).",
    "The water extraction company is quoting $3,100.",
    "That's above $2,500, so call Harbor at 1-800-555-0199 for approval before the work starts, unless you can't reach Harbor (§2.3, §2.1).",
)

# ---------------------------------------------------------------- §2.4
t(
    "All required documents were received on October 3. What is the latest date for a coverage decision?",
    "November 2, which is 30 days later, unless Harbor notifies the insured in writing with a reason for needing more time; the extension can be at most 30 more days (§2.4).",
)
t(
    "We agreed on the settlement amount today. When do I get paid?",
    "Payment is issued within 10 business days after the settlement amount is agreed, by direct deposit or check, or directly to your contractor if you authorize it (§2.4).",
)
t(
    "Dwelling settlement is $18,500 and there's a mortgage on the house. Who is the check made out to?",
    "The insured and the mortgage company jointly, because dwelling payments over $10,000 must include any mortgagee listed on the Declarations (§2.4).",
)
t(
    "Part of my claim is disputed. Do I have to wait until everything is resolved to get any money?",
    "No. Harbor issues partial payments for the undisputed amounts while the disputed part is reviewed, and an appeal does not delay them (§2.4, §7.1).",
)
t(
    "Complex fire claim: the adjuster needs more than 30 days after getting all documents. What has to happen?",
    "Harbor must notify the insured in writing, with the reason, before the 30 days end, and the extension cannot exceed 30 additional days (§2.4).",
)
t(
    "My car is financed. Will the repair payment include my lender?",
    "Yes. Auto payments for a financed or leased vehicle include the lienholder, although with your authorization Harbor can pay the body shop directly (§2.4).",
)
t(
    "When will someone from Harbor get in touch about my claim?",
    "An adjuster contacts you within 2 business days of your report. Have your photos and a description of the loss ready, since every claim needs them (§2.4, §2.2).",
    "And if they need to come out and see the damage?",
    "If an inspection is needed, it takes place within 7 business days of your report; keep the damaged items until the adjuster has seen them (§2.4, §2.3).",
)

# ---------------------------------------------------------------- §3.1
t(
    "Kitchen fire caused $6,200 in damage. What does Harbor pay?",
    "Harbor pays $5,700. The $500 all-perils deductible is subtracted from the $6,200 covered loss, and payment follows within 10 business days of agreeing on the amount (§3.1, §2.4).",
)
t(
    "Hail damage to the roof is $14,000 and the dwelling limit is $350,000. What's the payout?",
    "$7,000. The hail deductible is 2% of the $350,000 Coverage A limit, or $7,000, which is subtracted from the $14,000 loss (§3.1).",
)
t(
    "Small cabin insured for $40,000 had $3,000 of wind damage. What's the deductible and payment?",
    "The deductible is the $1,000 minimum, because 2% of $40,000 is only $800 and the higher figure applies. Harbor pays $3,000 minus $1,000, or $2,000 (§3.1).",
)
t(
    "Water from a leaking dishwasher caused $450 of damage. Will Harbor pay anything?",
    "No. The $450 loss is less than the $500 all-perils deductible, so no payment is made; the leaking dishwasher itself wouldn't be covered in any case (§3.1, §4.2).",
)
t(
    "What's my windstorm deductible if my dwelling coverage is $275,000?",
    "Your windstorm and hail deductible is $5,500, which is 2% of your $275,000 Coverage A limit; other perils, such as fire, use the $500 deductible (§3.1).",
)
t(
    "Burglary: broken back door $1,100 and stolen items $2,400. What does Harbor pay?",
    "$3,000. The broken door and the stolen items are one occurrence, so a single $500 deductible is subtracted from the combined $3,500 loss (§3.1, §3.3).",
)
t(
    "Lightning fried the electrical panel and some wiring, $3,300 in damage. Payout?",
    "$2,800. Lightning isn't windstorm or hail, so the $500 all-perils deductible applies to the $3,300 loss rather than the percentage deductible (§3.1).",
)
t(
    "Does my deductible apply when a guest sues me after slipping on my stairs?",
    "No. Personal liability and medical payments to others have no deductible, and Harbor also provides your legal defense if the guest sues (§3.1, §4.8).",
)
t(
    "Hail damaged my roof. Which deductible applies?",
    "Hail uses the windstorm and hail deductible: 2% of your Coverage A dwelling limit, with a $1,000 minimum, rather than the $500 all-perils deductible (§3.1).",
    "My Coverage A is $450,000 and the roof estimate is $21,000. What do I get?",
    "$12,000. Your deductible is $9,000 (2% of $450,000), and $21,000 minus $9,000 is $12,000; send the contractor's written estimate, since the repair exceeds $5,000 (§3.1, §2.2).",
)

# ---------------------------------------------------------------- §3.2
t(
    "I backed into a pole and the estimate is $2,340. What does Harbor pay?",
    "$1,840. Hitting a pole is a collision loss regardless of fault, so the $500 collision deductible is subtracted from the $2,340 estimate (§3.2, §5.1).",
)
t(
    "A deer ran into my car: $3,100 of damage. How much will I get?",
    "$2,850. Hitting an animal such as a deer is covered under comprehensive, not collision, so the $250 comprehensive deductible applies instead of $500 (§3.2, §5.1).",
)
t(
    "What are my AutoGuard deductibles?",
    "Collision $500, comprehensive $250, glass replacement $250, glass chip repair $0, and uninsured motorist property damage $100; rental reimbursement and roadside assistance have none (§3.2).",
)
t(
    "Hail dented my car and the estimate is $4,725. How much does Harbor pay?",
    "$4,475. Hail damage to a car is a comprehensive loss, so the $250 comprehensive deductible is subtracted from the $4,725 estimate (§3.2, §5.1).",
)
t(
    "Someone keyed the whole side of my car; the paint job is $1,180. What's covered?",
    "Harbor pays $930 under comprehensive after the $250 deductible. Vandalism must be reported to the police within 48 hours (§3.2, §5.1, §2.1).",
)
t(
    "I scraped my bumper on a curb; the estimate is $420. Is it worth filing?",
    "No. The $420 estimate is less than the $500 collision deductible, so Harbor would make no payment and the repair would be at your own cost (§3.2).",
)
t(
    "Insured was rear-ended by an identified driver who has no insurance; damage is $5,600. What does Harbor pay?",
    "$5,500. Uninsured motorist property damage applies because the other driver is identified, at fault and uninsured, with a $100 deductible and a $25,000 limit (§3.2, §5.1).",
)
t(
    "I rear-ended someone at a stoplight. Both cars have about $2,500 of damage and nobody was hurt. What covers this?",
    "Your car's damage is covered under collision with the $500 deductible, and the other car's damage is handled under your AutoGuard liability coverage (§5.1, §3.2).",
    "Do I need a police report?",
    "Yes. It's a collision with another vehicle where total damage appears to exceed $1,000, so Harbor needs a police report number (§2.2).",
)

# ---------------------------------------------------------------- §3.3
t(
    "One hailstorm damaged my roof ($12,000) and my car ($3,000). Dwelling limit is $300,000. How many deductibles do I pay?",
    "One. Only the highest applicable deductible, the $6,000 hail deductible (2% of $300,000), is charged once against the combined $15,000 loss, so Harbor pays $9,000 (§3.3, §3.1).",
)
t(
    "An ice-laden branch fell on my detached garage ($2,000) and my car ($1,500). What's paid?",
    "$3,000. For one event, only the higher deductible, the $500 HomeGuard deductible, is charged once against the combined $3,500 loss (§3.3, §3.1).",
)
t(
    "Two separate storms a week apart both damaged my roof. One deductible or two?",
    "Two. A deductible applies once per occurrence, and storms on different days are separate occurrences, so each roof loss carries its own windstorm deductible (§3.3, §3.1).",
)
t(
    "Does the single-deductible rule apply if my car is insured with another company?",
    "No. It only applies when one event damages a home insured under HomeGuard and a vehicle insured under AutoGuard for the same named insured (§3.3).",
)
t(
    "A fire in the detached garage damaged the garage ($8,000) and the car inside ($6,000). What does Harbor pay?",
    "$13,500. One event hit both policies, so only the higher $500 deductible is charged against the combined $14,000 loss (§3.3, §3.1).",
)

# ---------------------------------------------------------------- §4.1
t(
    "Dwelling limit is $300,000 and a windstorm flattened my shed. What's the most Harbor will pay for the shed?",
    "Up to $30,000, since other structures are covered up to 10% of the Coverage A limit; the windstorm deductible is subtracted from the loss first (§4.1, §3.1).",
)
t(
    "A new roof costs $20,000, but my roof was 12 years old. Will Harbor deduct depreciation?",
    "Only temporarily. Harbor first pays actual cash value and holds back the depreciation, then releases it once the roof is replaced within 24 months, less your deductible (§4.1).",
)
t(
    "Insured decided not to rebuild the fire-damaged sunroom. What do they receive?",
    "Actual cash value only, meaning replacement cost minus depreciation and the deductible, because the depreciation holdback is released only if the work is completed within 24 months (§4.1).",
)
t(
    "The city requires us to bring the wiring up to code while repairing fire damage. Is that covered?",
    "Yes. Extra costs required by building codes to repair a covered loss are covered up to 10% of your Coverage A limit (§4.1).",
)
t(
    "Dwelling limit $250,000; code-upgrade costs after the fire are $31,000. How much is covered?",
    "$25,000, the ordinance or law limit of 10% of the $250,000 Coverage A; the remaining $6,000 of code-upgrade costs is the insured's responsibility (§4.1).",
)
t(
    "A car crashed through my fence. The repair is $4,200. What do I get?",
    "$3,700. The fence is an other structure covered for vehicle impact, less the $500 deductible, and Harbor may recover from the driver and refund your deductible proportionally (§4.1, §3.1, §7.3).",
)
t(
    "A landslide carried away part of our back yard. Will Harbor pay to restore the land?",
    "No. Land, including the cost to restore or stabilize it, is not covered, and landslide is excluded earth movement under HomeGuard (§4.1, §6.5).",
)

# ---------------------------------------------------------------- §4.2
t(
    "Policyholder reports a burst pipe under the kitchen sink 3 days ago; the cabinets and flooring are damaged. Covered?",
    "Yes. A burst pipe is a sudden and accidental discharge, so the cabinet and floor damage is covered less the $500 deductible. Fixing the pipe itself is not covered (§4.2, §3.1).",
)
t(
    "My washing machine hose split and flooded the laundry room. Will you buy me a new washer too?",
    "No. The failed appliance itself isn't covered, but the resulting water damage to floors, walls and belongings is covered, less the $500 deductible (§4.2, §3.1).",
)
t(
    "A slow drip behind the shower wall went on for about two months and rotted the subfloor. Covered?",
    "No. Continuous or repeated leakage over 14 days or more is excluded, and so is rot, so neither the subfloor nor the leak repair is covered (§4.2, §6.2).",
)
t(
    "The plumber has to open a wall to reach the leaking pipe. Who pays for the wall?",
    "Harbor does. Tearing out and replacing the parts of the building needed to reach a covered leak is covered; repairing the pipe itself is not (§4.2).",
)
t(
    "Our vacation cabin had the heat turned off and the pipes froze in January. Is the damage covered?",
    "Not unless you had shut off the water and drained the system. Freezing damage in a home without heat is only covered if heat was maintained or the plumbing was drained (§4.2).",
)
t(
    "A pipe froze and burst during a cold snap while we were home with the heat on. Covered?",
    "Yes. Heat was maintained, so the resulting water damage is covered less the $500 deductible; repairing the burst pipe itself is not covered (§4.2, §3.1).",
)
t(
    "Wind ripped off shingles and rain poured into the attic. Is the water damage covered?",
    "Yes. Rain entering through an opening created by wind is covered, but the windstorm deductible of 2% of Coverage A applies (§4.2, §3.1).",
)
t(
    "Rain leaked in through an old window seal that's been failing for years. Covered?",
    "No. The opening wasn't created by wind or hail, and leaks from worn seals are wear and tear and lack of maintenance, which are excluded (§4.2, §6.2).",
)
t(
    "A clogged toilet overflowed and water came through the ceiling below. Is that covered?",
    "Yes. An overflowing toilet is a sudden and accidental overflow from plumbing, so the ceiling damage is covered less the $500 deductible (§4.2, §3.1).",
)
t(
    "The fire sprinkler in the hallway went off by accident and soaked the floor. Covered?",
    "Yes. Accidental discharge from a fire-sprinkler system is covered water damage, so the floor is covered subject to the $500 deductible (§4.2, §3.1).",
)
t(
    "Mold remediation after a covered burst pipe is $8,200. How much of that counts toward the claim?",
    "$5,000. Mold from a covered water loss is capped at $5,000 per policy term, and the occurrence's single deductible is applied to the combined water and mold claim (§6.2, §4.2, §3.3).",
)
t(
    "My water heater burst and ruined the basement carpet and drywall. Is that covered?",
    "Yes. A ruptured water heater is a sudden and accidental discharge, so the resulting damage is covered, subject to the $500 deductible. The water heater itself is not covered (§4.2, §3.1).",
    "The contractor says $7,600 for the basement. What will I get?",
    "$7,100 after the $500 deductible. Because the repair is over $5,000, Harbor needs the contractor's written estimate, which you already have (§3.1, §2.2).",
)

# ---------------------------------------------------------------- §4.3
t(
    "Our basement floor drain backed up with sewage in heavy rain. Is that covered?",
    "Only if you have the Sewer and Drain Backup endorsement on your Declarations. It pays up to $10,000 per occurrence with the $500 deductible, but not backups caused by flood waters (§4.3).",
)
t(
    "I have the sewer backup endorsement. Cleanup and repairs cost $14,500. What do I get?",
    "$10,000. After the $500 deductible the loss is $14,000, which exceeds the endorsement's $10,000 per-occurrence limit, so the remaining $4,000 is your cost (§4.3, §3.1).",
)
t(
    "The sump pump quit during a storm and water overflowed from the pit. Covered?",
    "Yes, if you have the Sewer and Drain Backup endorsement: sump overflow is covered up to $10,000, less the $500 deductible. The pump itself isn't covered (§4.3).",
)
t(
    "The river overflowed and water came up through our basement drains. Does my sewer endorsement cover it?",
    "No. The endorsement excludes backups caused by flood waters, and flood itself is excluded under HomeGuard, so this would need a separate flood policy (§4.3, §6.1).",
)
t(
    "Sewer backup cleanup cost $3,900, and the endorsement is on the policy. Payment?",
    "Harbor pays $3,400, the $3,900 loss minus the $500 deductible, well within the endorsement's $10,000 per-occurrence limit (§4.3, §3.1).",
)
t(
    "I'd like to add sewer backup coverage. What does it include?",
    "The Sewer and Drain Backup endorsement covers water or sewage backing up through sewers or drains and sump overflow, up to $10,000 per occurrence with the $500 deductible (§4.3).",
    "If I add it today, will it cover a backup next week?",
    "No. There is a 30-day waiting period from the date the endorsement is added, so a backup next week would not be covered (§1.3, §4.3).",
)

# ---------------------------------------------------------------- §4.4
t(
    "My dwelling coverage is $320,000. What's my personal property limit?",
    "$160,000, which is 50% of your Coverage A limit, unless your Declarations show a different amount; high-value items can also be scheduled separately (§4.4).",
)
t(
    "My 5-year-old TV was destroyed in a fire. Will I get the price of a new one?",
    "Not unless you have the Replacement Cost Contents endorsement. Otherwise Harbor pays actual cash value, which is replacement cost minus depreciation (§4.4).",
)
t(
    "I have the Replacement Cost Contents endorsement. My fire-damaged sofa has an actual cash value of $900 and costs $2,000 new. How does payment work?",
    "Harbor pays the $900 actual cash value first, then the remaining $1,100 once you replace the sofa within 180 days; the deductible applies to the claim as a whole (§4.4).",
)
t(
    "A burglar took $600 in cash and a laptop with an actual cash value of $1,800. What's payable?",
    "$1,500. Cash is limited to $200, so the covered amount is $2,000, minus the $500 deductible. Proof of ownership is needed for the laptop (§4.4, §3.1, §2.2).",
)
t(
    "Jewelry worth $7,000 was stolen. How much can Harbor pay?",
    "Jewelry theft is capped at $2,500 total, so if it's the only loss Harbor pays $2,000 after the $500 deductible. Scheduling valuable pieces would cover their full value (§4.4).",
)
t(
    "My $6,000 engagement ring was destroyed in a house fire. Does the $2,500 jewelry limit apply?",
    "No. The $2,500 jewelry limit applies only to theft; fire losses are covered up to the Coverage C limit at actual cash value (§4.4).",
)
t(
    "My laptop was stolen from my hotel room while I was on vacation. Covered?",
    "Yes. Property away from home is covered up to 10% of your Coverage C limit. Report the theft to the police within 48 hours (§4.4, §4.6).",
)
t(
    "The fire claim includes a coin collection worth $3,500. How much of the collection counts?",
    "$1,000. Coins, stamps and other collectibles have a $1,000 special limit for any covered peril, so the collection would need to be scheduled to insure its full value (§4.4).",
)
t(
    "Are my car's aftermarket speakers covered under HomeGuard if they're stolen?",
    "No. Vehicle parts and equipment are not covered under HomeGuard. AutoGuard comprehensive covers aftermarket equipment up to $1,500 unless it's listed on the Declarations (§4.4, §5.1).",
)
t(
    "Heavy snow collapsed the garage roof onto our kayak and trailer, worth $2,300 together. How much is covered?",
    "$1,500, the special limit for watercraft including trailers; the $500 deductible then applies to the claim as a whole (§4.4, §3.1).",
)
t(
    "Can I get extra coverage for my grandmother's antique watch?",
    "Yes. High-value items can be scheduled on your Declarations for their full appraised value, which avoids the $2,500 theft limit for jewelry and watches (§4.4).",
)
t(
    "My personal property limit is $150,000. How much coverage is there for my son's dorm belongings?",
    "Up to $15,000. Property away from the residence, including a student's property at school, is covered up to 10% of Coverage C (§4.4, §1.1).",
)

# ---------------------------------------------------------------- §4.5
t(
    "A fire made my house unlivable. Will Harbor pay for a hotel?",
    "Yes. Temporary housing covers the increase in living costs, such as a hotel, while the home is uninhabitable after a covered loss (§4.5).",
)
t(
    "Dwelling limit is $300,000. What's the most temporary housing coverage I can get?",
    "Up to $60,000 (20% of Coverage A) or 12 months, whichever is reached first; it pays only the increase in living costs while the home is uninhabitable (§4.5).",
)
t(
    "Our family normally spends $800 a month on groceries; eating out while displaced costs $1,400 a month. What's covered?",
    "$600 a month. Temporary housing pays only the increase in meal costs above your normal grocery spending, not the full $1,400 restaurant bill (§4.5).",
)
t(
    "Will Harbor keep paying my mortgage while we live in a rental after the fire?",
    "No. Normal expenses that continue, like your mortgage, are not paid; Harbor pays the rental because it's an increased cost (§4.5).",
)
t(
    "We need a hotel tonight. Can I get money upfront?",
    "Yes. You can request an advance of up to $1,500 for temporary housing; keep hotel receipts so the rest of your extra costs can be reimbursed (§4.5, §2.4).",
)
t(
    "Police closed our street for 3 weeks after a neighbor's house fire made the area unsafe; our house wasn't damaged. Any coverage?",
    "Yes, for up to 14 days. When a civil authority bars use of your home because of covered damage to a neighboring property, Harbor pays the increased living expenses (§4.5).",
)
t(
    "Temporary housing has been paid for 12 months but the rebuild isn't finished. Does it continue?",
    "No. Coverage ends at 12 months or 20% of Coverage A, whichever comes first, even if the rebuild is still in progress (§4.5).",
)
t(
    "Boarding our dog while we're displaced costs $35 a day. Covered?",
    "Yes. Pet boarding is an increased living expense, so the $35 a day is covered while your home is uninhabitable after a covered loss (§4.5).",
)
t(
    "Our home flooded and we're staying in a motel. Does temporary housing apply?",
    "No. Flood is excluded under HomeGuard, and temporary housing is only paid after a covered loss, so the motel costs aren't reimbursed (§4.5, §6.1).",
)
t(
    "Our house is unlivable after a covered fire. The dwelling limit is $250,000. How much temporary housing coverage do we have?",
    "Temporary housing pays your increased living costs up to $50,000 (20% of Coverage A) or 12 months, whichever comes first (§4.5).",
    "We found a rental for $2,800 a month and we're still paying our mortgage. How much does Harbor pay each month?",
    "$2,800 a month for the rental, since it's an extra cost. The mortgage is a normal continuing expense and isn't paid (§4.5).",
)

# ---------------------------------------------------------------- §4.6
t(
    "Someone broke in while we were away; we discovered it this morning. What should we do first?",
    "Report the theft to the police within 48 hours of discovery, then report the claim to Harbor within 30 days with the police report number and an itemized list (§4.6, §2.1, §2.2).",
)
t(
    "Policyholder filed the police report 5 days after discovering the burglary, with no particular reason for the delay. Impact?",
    "The claim may be denied, because theft must be reported to the police within 48 hours of discovery unless the delay was reasonable (§4.6).",
)
t(
    "My golf clubs were stolen from my unlocked car in the driveway, no signs of a break-in. Covered?",
    "No. Theft from an unattended vehicle is covered only if there are visible signs of forced entry, and an unlocked car with no damage doesn't meet that (§4.6).",
)
t(
    "A thief smashed my car window ($400) and stole my laptop ($1,300) from the back seat. Which policy covers what, and what do I get?",
    "The window falls under AutoGuard comprehensive and the laptop under HomeGuard. It's one event, so only the higher $500 deductible applies and Harbor pays $1,200 (§4.6, §5.2, §3.3).",
)
t(
    "Our teenage son took cash from my wallet. Can I claim it as theft?",
    "No. Theft committed by an insured, including a resident family member like your son, is not covered, so this can't be claimed under HomeGuard (§4.6, §1.1).",
)
t(
    "Tools were stolen from our new house while it was still under construction, before we moved in. Covered?",
    "No. Theft from a dwelling under construction before it is occupied is not covered, so the tools can't be claimed under your HomeGuard policy (§4.6).",
)
t(
    "Police found my stolen bike after Harbor already paid me. What happens now?",
    "You choose: keep the payment and give the bike to Harbor, or return the payment, less the cost of repairing any damage to the bike, and keep it (§4.6).",
)
t(
    "Burglars broke the front door frame and it costs $1,300 to fix. Covered?",
    "Yes. Burglar damage to the home is covered under Coverage A; Harbor pays $800 after the $500 deductible (§4.6, §3.1).",
)
t(
    "Someone stole my identity and opened credit cards in my name. Does HomeGuard cover this?",
    "No. Identity theft and fraudulent use of accounts are not covered under HomeGuard; theft coverage applies to stolen personal property, not to accounts (§4.6, §4.4).",
)
t(
    "A $240 blender was stolen off my porch. Should I file?",
    "Theft from your porch is covered, but the $240 loss is below the $500 deductible, so no payment would be made (§4.6, §3.1).",
)
t(
    "Our house was burglarized over the weekend. What do I need to do?",
    "Report it to the police within 48 hours of discovery and to Harbor within 30 days; you'll need the police report number for the claim (§4.6, §2.1).",
    "They took a watch worth $4,000 and $350 in cash. What can I expect?",
    "Watches are capped at $2,500 for theft and cash at $200, so the covered amount is $2,700 and Harbor pays $2,200 after the $500 deductible. Proof of ownership is needed for the watch (§4.4, §3.1, §2.2).",
)

# ---------------------------------------------------------------- §4.7
t(
    "An ice storm brought a tree down on the garage: repairs $4,000 and tree removal $800. What does Harbor pay?",
    "$4,300. The garage damage and the removal, which is within the $1,000 per-tree limit, total $4,800, minus the $500 deductible (§4.7, §3.1).",
)
t(
    "The tree service quotes $1,800 to remove one big oak from my roof. How much will Harbor cover for removal?",
    "$1,000. Removal of a tree that damages a covered structure is limited to $1,000 per tree, so the other $800 of the quote is your cost (§4.7).",
)
t(
    "A storm dropped three trees on the house and removal costs $900 each. How much removal is covered?",
    "$2,000. Each tree is under the $1,000 per-tree limit, but removal is capped at $2,000 per occurrence, so $700 of the $2,700 isn't covered (§4.7).",
)
t(
    "A tree fell in the back yard and didn't hit anything. Will Harbor pay to remove it?",
    "No. A fallen tree that doesn't hit a covered structure is only removed if it blocks a driveway or an access ramp (§4.7).",
)
t(
    "A fallen tree is blocking my driveway after a windstorm; removal is $650. What's covered?",
    "$500. Removing a tree that blocks a driveway is covered up to $500 per occurrence with no deductible, so you pay the other $150 (§4.7).",
)
t(
    "My neighbor's tree fell on my house in a storm. Whose insurance pays?",
    "Your own HomeGuard policy covers your house. If the neighbor was negligent, Harbor may recover from them and refund your deductible proportionally (§4.7, §7.3).",
)
t(
    "My tree fell onto my neighbor's garage. Do I have to pay?",
    "Not automatically. The neighbor's own insurance normally covers their garage; your liability coverage applies only if you're legally liable, such as through negligence (§4.7, §4.8).",
)
t(
    "Last year the city sent us a letter saying our dead maple was hazardous. We never removed it and it just fell on the house. Covered?",
    "No. Damage is not covered when the insured was notified in writing that the tree was hazardous and did not remove it within 60 days of the notice (§4.7).",
)
t(
    "A tree limb fell on my car in the driveway. Is that a home or auto claim?",
    "It's an auto claim. A tree falling on a vehicle is covered under AutoGuard comprehensive with a $250 deductible (§4.7, §5.1).",
)
t(
    "A tree fell on our house during a thunderstorm. Is that covered?",
    "Yes. Damage from a tree that falls because of a covered peril such as wind or lightning is covered, plus removal up to $1,000 per tree and $2,000 per occurrence (§4.7).",
    "It was the wind. Dwelling limit is $200,000, roof repair is $11,000 and removal is $1,300. What's paid?",
    "$8,000. Removal counts only up to $1,000, so the covered total is $12,000, minus the $4,000 windstorm deductible (2% of $200,000) (§4.7, §3.1).",
)

# ---------------------------------------------------------------- §4.8
t(
    "A guest slipped on our icy steps and broke an ankle. The ER bill is $3,800. Does Harbor pay?",
    "Yes. Medical payments to others covers up to $5,000 per guest regardless of fault, with no deductible, so the $3,800 bill can be paid (§4.8).",
)
t(
    "A delivery driver tripped on our porch and has $7,200 in medical bills. What's covered?",
    "Medical payments covers up to $5,000 regardless of fault; anything beyond that is covered under personal liability, up to $300,000, only if you're legally liable (§4.8).",
)
t(
    "Our dog bit the neighbor's child. Are we covered?",
    "Yes, under personal liability, unless the dog had been declared dangerous by a local authority before the bite or is excluded on your Declarations (§4.8).",
)
t(
    "Our dog was declared dangerous by the county last year and just bit a jogger. Coverage?",
    "No. Dog bites are not covered when the dog was declared dangerous by a local authority before the incident (§4.8).",
)
t(
    "My son accidentally broke the neighbor's window playing baseball. Covered?",
    "Yes. Accidental property damage for which an insured is legally liable is covered under personal liability, with no deductible (§4.8).",
)
t(
    "A guest who fell off my deck is suing me for $450,000. What will Harbor cover?",
    "Harbor provides a legal defense, with defense costs paid in addition to the limit, and covers damages up to $300,000 per occurrence; any judgment above that is your responsibility (§4.8).",
)
t(
    "My husband fell down our stairs. Can we use medical payments coverage?",
    "No. Medical payments to others doesn't apply to insureds or other regular residents of the household, so it can't be used for your husband's injury (§4.8).",
)
t(
    "I borrowed my friend's pressure washer and broke it. Does my liability coverage pay for it?",
    "No. Personal liability excludes damage to property owned by, rented to, or borrowed by an insured, so the borrowed pressure washer isn't covered (§4.8).",
)
t(
    "A kid got hurt on our trampoline during a birthday party. What coverage applies?",
    "Medical payments to others covers a guest's medical expenses up to $5,000 per person regardless of fault, with no deductible (§4.8).",
    "The parents are now threatening to sue for more.",
    "Personal liability covers amounts you're legally liable for, up to $300,000 per occurrence, and Harbor provides your legal defense in addition to that limit (§4.8).",
)

# ---------------------------------------------------------------- §5.1
t(
    "I hit a pothole and bent the rim and a control arm: $1,700. Collision or comprehensive?",
    "Collision. Hitting a pothole counts as striking an object, so Harbor pays $1,200: the $1,700 repair minus the $500 collision deductible (§5.1, §3.2).",
)
t(
    "I slid on ice into a guardrail. Does it matter that nobody else was involved and it wasn't really my fault?",
    "No. Collision covers striking an object regardless of fault, so the damage is covered with the $500 collision deductible (§5.1).",
)
t(
    "Someone hit my parked car and drove off. What do I do?",
    "Report it to the police within 48 hours. A hit-and-run by an unidentified driver is handled as collision with the $500 deductible (§5.1, §2.1).",
)
t(
    "My car was stolen two weeks ago and still hasn't been found. When will it be settled?",
    "If it isn't recovered within 30 days after the theft was reported to Harbor, it is settled as a total loss at actual cash value (§5.1, §5.5).",
)
t(
    "My car was parked on the street during a flash flood and water got into the cabin. Covered?",
    "Yes. Flood damage to a vehicle is covered under comprehensive, with a $250 deductible, even though flood is excluded for the home (§5.1, §6.1).",
)
t(
    "Custom wheels worth $3,200, not listed on my Declarations, were stolen. What will Harbor pay?",
    "$1,250. Unlisted aftermarket equipment is capped at $1,500, and then the $250 comprehensive deductible is subtracted; listing the wheels on the Declarations would cover their full value (§5.1, §3.2).",
)
t(
    "Am I covered if I rent a car on vacation for a week?",
    "Yes. AutoGuard extends to a private passenger car you rent for 30 days or less, with the same deductibles as your own car (§5.1).",
)
t(
    "My engine blew up on the highway with no accident. Covered?",
    "No. Mechanical breakdown is excluded, though roadside assistance, included with comprehensive, can tow the car up to 25 miles (§6.2, §5.4).",
)
t(
    "A rock fell from a cliff onto my hood. Which coverage applies?",
    "Comprehensive, because falling objects are a comprehensive peril rather than a collision, so the $250 deductible applies instead of $500 (§5.1, §3.2).",
)
t(
    "My car caught fire in the garage from an electrical short. Covered?",
    "Yes. Fire damage to the vehicle is covered under comprehensive with a $250 deductible; the shorted part alone would be electrical breakdown, but the fire it caused is covered (§5.1, §6.2).",
)
t(
    "The creek flooded our neighborhood and the house took on water. Is that covered?",
    "No. Flood damage to your home isn't covered under HomeGuard, and temporary housing isn't paid after a flood either; a separate flood policy is needed (§6.1, §4.5).",
    "My car was parked in the garage and got water in the engine. Anything there?",
    "Yes. AutoGuard comprehensive covers flood damage to your car, with a $250 deductible, even though the house damage is excluded (§5.1, §6.1).",
)

# ---------------------------------------------------------------- §5.2
t(
    "Small rock chip in my windshield. What's my cost to fix it?",
    "Nothing. Repairing a chip or small crack is covered under comprehensive with no deductible, so Harbor pays the full repair cost (§5.2).",
)
t(
    "$2,300 glass replacement on an SUV including lane-assist camera recalibration. What does Harbor pay?",
    "$2,050. Windshield replacement has a $250 deductible, and the camera recalibration is included in the replacement claim; any licensed glass shop can do the work (§5.2, §3.2).",
)
t(
    "My windshield broke when I rear-ended someone. Is that a glass claim?",
    "No. Glass broken in a collision is part of the collision claim, so the $500 collision deductible applies to the whole repair, not the $250 glass deductible (§5.2).",
)
t(
    "A vandal smashed my rear window; replacement is $480. What's covered?",
    "Harbor pays $230 after the $250 glass replacement deductible. Report the vandalism to the police within 48 hours (§5.2, §2.1).",
)
t(
    "My windshield crack is 10 inches long. Repair or replacement?",
    "Deductible-free repair is generally for chips and cracks under 6 inches, so a 10-inch crack will usually need replacement with a $250 deductible (§5.2).",
)
t(
    "Hail shattered my sunroof and dented the hood in the same storm. How many deductibles?",
    "One. Glass damage not caused by a collision is a comprehensive loss, and a deductible applies once per occurrence, so a single $250 deductible covers both (§5.2, §3.3).",
)
t(
    "A rock hit my windshield on the highway. What's covered?",
    "If it's a chip or small crack, repair has no deductible; if the windshield must be replaced, the $250 deductible applies (§5.2).",
    "The shop says it needs replacing: $890 including camera recalibration.",
    "Harbor pays $640, the $890 replacement minus the $250 deductible; the camera recalibration is included in the claim at no extra cost to you (§5.2).",
)

# ---------------------------------------------------------------- §5.3
t(
    "My car will be in the shop for 12 days after a covered collision. The rental costs $38 a day. What's covered?",
    "All of it, $456, because $38 is under the $40 daily limit and 12 days is within the 30-day maximum (§5.3).",
)
t(
    "The rental costs $55 a day for 10 days. How much does Harbor reimburse?",
    "$400. Harbor pays $40 per day for the 10 days, so you cover the remaining $15 a day, or $150 in total (§5.3).",
)
t(
    "Repairs are going to take 40 days. How many rental days are covered?",
    "30 days, at up to $40 a day, for a maximum of $1,200 per claim; the last 10 days of the rental would be your cost (§5.3).",
)
t(
    "I don't want a rental car. Can I use Uber instead?",
    "Yes. Rental reimbursement can pay for taxis, ride-share or public transit instead of a rental, up to $40 per day (§5.3).",
)
t(
    "My car was stolen Monday morning and I reported it to Harbor at noon. When does rental coverage start?",
    "Wednesday at noon. For a stolen vehicle, rental reimbursement starts 48 hours after the theft is reported to Harbor (§5.3).",
)
t(
    "Harbor offered a total-loss settlement on the 10th. How long can I keep the rental?",
    "Through the 13th. Rental reimbursement ends 3 days after Harbor offers a total loss settlement, so plan to return the car by then (§5.3, §5.5).",
)
t(
    "Does rental reimbursement cover fuel and the rental company's damage waiver?",
    "No. You pay for fuel, upgrades and any optional coverage sold by the rental company; Harbor covers only the daily rental cost up to $40 (§5.3).",
)
t(
    "My car is in the shop for a transmission failure. Do I get a rental?",
    "No. Rental reimbursement applies only to covered collision or comprehensive losses, and mechanical breakdown such as a failed transmission is excluded (§5.3, §6.2).",
)
t(
    "Policyholder waited 9 days to authorize repairs after the estimate. Are those rental days covered?",
    "No. Days of delay caused by the insured, such as not authorizing repairs, are not covered, so those 9 days are the policyholder's cost (§5.3).",
)
t(
    "Insured rented a $30-a-day economy car for 22 days during repairs. Reimbursement?",
    "$660, the full cost, since $30 is under the $40 daily limit and 22 days is within the 30-day maximum (§5.3).",
)
t(
    "My car is in the shop after a covered accident. Do I get a rental?",
    "Yes. Rental reimbursement pays up to $40 per day for up to 30 days while the car is being repaired for a covered loss (§5.3).",
    "The only car available is $52 a day, and repairs take 8 days. What will I pay?",
    "$96. Harbor pays $320 (8 days at $40), and you pay the extra $12 a day above the $40 daily limit (§5.3).",
)

# ---------------------------------------------------------------- §5.4
t(
    "How many roadside assistance calls do I get a year?",
    "Up to 4 service calls per vehicle per policy year, with no deductible, as long as your AutoGuard policy includes comprehensive (§5.4).",
)
t(
    "My car broke down 40 miles from my mechanic. Will Harbor tow it there?",
    "Yes, but only the first 25 miles are covered; you pay for the additional 15 miles, and the tow uses one of your 4 service calls (§5.4).",
)
t(
    "I ran out of gas. Is the fuel free?",
    "No. Fuel delivery of up to 3 gallons is covered as a roadside service with no deductible, but you pay for the fuel itself (§5.4).",
)
t(
    "I locked my keys in the car and the locksmith charged $135. How much is covered?",
    "$100. Lockout service covers a locksmith up to $100, so you pay the remaining $35; the call counts as one of your 4 per year (§5.4).",
)
t(
    "I used a local tow company outside Harbor's network; the bill was $160. Will I be reimbursed?",
    "Partly. Harbor reimburses up to $100 per service call for out-of-network providers if you submit the receipt within 60 days (§5.4).",
)
t(
    "Will calling roadside assistance raise my premium?",
    "No. Roadside calls are not claims, do not affect your premium, and have no deductible, though you're limited to 4 calls per vehicle per policy year (§5.4).",
)
t(
    "My car slid into a ditch about 30 feet off the road. Can roadside winch it out?",
    "Yes. Winching is covered when the vehicle is within 100 feet of a public road, so a car 30 feet into a ditch qualifies (§5.4).",
)
t(
    "I'm stuck on a trail 2 miles from the nearest road. Will roadside come get me?",
    "No. Recovery of vehicles more than 100 feet from a public road is not covered by roadside assistance, so you'd need to arrange that recovery yourself (§5.4).",
)
t(
    "Flat tire, but I don't have a spare. Can roadside help?",
    "Tire changes use your own spare, so without one the option is a tow of up to 25 miles, which counts as one of your 4 service calls (§5.4).",
)
t(
    "My battery died in the parking lot at work. Can roadside help?",
    "Yes. A jump-start is covered as one of your 4 service calls per policy year, with no deductible and no effect on your premium (§5.4).",
    "If it still won't start after the jump, can they tow it to my mechanic 12 miles away?",
    "Yes. Towing up to 25 miles is covered, so a 12-mile tow to your mechanic costs you nothing; the repair itself isn't part of roadside assistance (§5.4).",
)

# ---------------------------------------------------------------- §5.5
t(
    "Repair estimate is $9,000 and the car's actual cash value is $11,000. Is it a total loss?",
    "Yes. $9,000 is about 82% of the $11,000 actual cash value, which meets the 75% total loss threshold, so Harbor settles it as a total loss (§5.5).",
)
t(
    "ACV is $20,000 and the repair estimate is $14,000. Will it be totaled?",
    "No. $14,000 is 70% of the actual cash value, below the 75% threshold, so the car will be repaired (§5.5).",
)
t(
    "Totaled car: ACV $18,000, sales tax $1,080, title fees $120, collision deductible. What's the settlement?",
    "$18,700. The settlement adds sales tax and title fees to the ACV, so $18,000 + $1,080 + $120, minus the $500 collision deductible (§5.5).",
)
t(
    "How does Harbor determine what my car was worth?",
    "Harbor uses at least 3 comparable vehicles for sale within 150 miles, same make, model and year with similar mileage and options, adjusted for mileage, condition and options (§5.5).",
)
t(
    "My car was totaled; I owe $16,000 on the loan and the settlement is $13,500. No gap coverage. What happens?",
    "Harbor pays the lender the $13,500 first, and you remain responsible for the other $2,500 of the loan; a gap endorsement could have covered that difference (§5.5).",
)
t(
    "Totaled in a hailstorm: ACV $8,000, salvage value $1,200, and the owner keeps the car. Ignoring taxes and fees, what's paid?",
    "$6,550. That's $8,000 minus the $250 comprehensive deductible minus the $1,200 salvage value, which is deducted because the owner keeps the car (§5.5, §3.2).",
)
t(
    "I think Harbor's valuation of my car is too low. What can I do?",
    "Submit your own comparable listings for similar vehicles. If you still disagree, either side can demand appraisal, where independent appraisers set the amount (§5.5, §7.1).",
)
t(
    "The car had an unrepaired dent from last year when it was totaled. Does that change the payout?",
    "Yes. Harbor deducts an amount for prior unrepaired damage from the total loss settlement, since the dent lowered the car's value before the loss (§5.5).",
)
t(
    "My car was a total loss after sitting in floodwater. It was worth $22,000, sales tax here is 6%, and the title transfer fee is $85. What will I get?",
    "$23,155. Sales tax is 6% of $22,000, or $1,320, so the total is $22,000 + $1,320 + $85, minus the $250 comprehensive deductible (§5.5, §3.2).",
)
t(
    "Gap claim: ACV $12,000, total loss payment $11,800, loan balance $16,000. What does gap pay and what's left?",
    "Gap pays $3,000, its cap of 25% of the $12,000 ACV. The remaining balance is $4,200, so the insured still owes $1,200 (§5.5).",
)
t(
    "My car was totaled and I have the gap endorsement. What does gap pay?",
    "Gap pays the remaining loan or lease balance after Harbor's total loss payment, up to 25% of the vehicle's ACV. It doesn't pay overdue payments, late fees, or balances rolled over from a prior loan (§5.5).",
    "ACV was $14,000, Harbor's payment is $13,500, and I owe $16,500. How much will gap pay?",
    "$3,000. The remaining balance is $16,500 minus $13,500, or $3,000, which is within the gap cap of $3,500 (25% of $14,000) (§5.5).",
)
t(
    "Harbor says my car is a total loss. Why?",
    "A vehicle is a total loss when the repair estimate is 75% or more of its actual cash value, or when it's stolen and not recovered within 30 days (§5.5).",
    "I still have the rental car. When does that coverage end?",
    "It ends three days after Harbor makes the total loss settlement offer, or earlier if you reach the 30-day limit, so plan to return the car then (§5.3).",
)

# ---------------------------------------------------------------- §5.6
t(
    "My friend borrowed my car with my permission and crashed. Is she covered?",
    "Yes. Anyone with a valid license driving with your permission is covered, and the collision claim has a $500 deductible (§5.6, §5.1).",
)
t(
    "My daughter got her license two months ago and we never added her. She dented the car. Covered?",
    "Not for the dent. After 30 days an unlisted household member is covered for liability only, so collision and comprehensive damage while she drives isn't covered (§5.6).",
)
t(
    "My son with a learner's permit crashed while I, age 45, was in the passenger seat. Covered?",
    "Yes. Permit drivers are covered while supervised by a licensed driver aged 21 or older in the front passenger seat, so the $500 collision deductible applies (§5.6, §5.1).",
)
t(
    "Permit driver was practicing with her 19-year-old brother in the passenger seat and hit a fence. Covered?",
    "No. A learner's permit driver is covered only when supervised by a licensed driver aged 21 or older, so the collision isn't covered (§5.6).",
)
t(
    "My ex-husband is an excluded driver on my policy. He took my car and crashed it. Coverage?",
    "None. Drivers named as excluded on the Declarations have no coverage of any kind while driving your vehicle, so the crash damage is not covered (§5.6).",
)
t(
    "Our nephew moved in and got his license last week, and he backed my car into the mailbox. Is it covered?",
    "Yes. New household drivers are covered for 30 days after getting a license or moving in, so the collision is covered with the $500 deductible. List him within 30 days (§5.6, §5.1).",
)
t(
    "A valet scraped my car against a pillar. Covered?",
    "Yes. The valet was driving with your permission, so collision applies with the $500 deductible, and Harbor may recover from the valet company (§5.6, §7.3).",
)
t(
    "Can my neighbor borrow my car this weekend?",
    "Yes. Anyone with a valid driver's license driving with your permission is covered, and collision damage would carry your $500 deductible (§5.6, §5.1).",
    "What if his license is currently suspended?",
    "Then he isn't a covered driver, because coverage for permitted drivers requires a valid license, so damage while he drives wouldn't be covered (§5.6).",
)

# ---------------------------------------------------------------- §6.1
t(
    "Heavy rain flooded our yard and water came in under the back door. Covered?",
    "No. Surface water is excluded under HomeGuard whether or not it's driven by wind; a separate flood policy is needed for this risk (§6.1).",
)
t(
    "Hurricane storm surge pushed water into the first floor. Is that covered?",
    "No. Storm surge is excluded under HomeGuard even when it's driven by hurricane winds; a separate flood policy is needed for that risk (§6.1).",
)
t(
    "Groundwater seeps through our basement foundation every spring. Covered?",
    "No. Water seeping through foundations from ground water is excluded, and leakage that repeats over 14 days or more is excluded as well (§6.1, §4.2).",
)
t(
    "Our lake overflowed its banks and damaged the boathouse. Covered?",
    "No. Overflow of any body of water, including a lake, is excluded under HomeGuard, so the boathouse damage would need a separate flood policy (§6.1).",
)

# ---------------------------------------------------------------- §6.2
t(
    "Our roof is 25 years old and leaks every time it rains. Covered?",
    "No. Wear and tear, aging and lack of maintenance are excluded, so leaks from an old roof aren't covered (§6.2).",
)
t(
    "Squirrels chewed through wiring in our attic. Covered?",
    "No. Damage by animals nesting in the home is excluded; however, if the chewed wiring starts a fire, the fire damage is covered (§6.2).",
)
t(
    "Corroded wiring sparked a fire inside the wall. Covered?",
    "The fire damage is covered, less the $500 deductible, but replacing the corroded wiring itself is not, because corrosion is excluded (§6.2, §3.1).",
)
t(
    "Our foundation cracked from settling. Covered?",
    "No. Settling, cracking and shrinking of foundations are excluded under HomeGuard, because they are gradual deterioration rather than sudden and accidental damage (§6.2, §4.1).",
)
t(
    "My tire blew out from wear and I hit the guardrail. What's covered?",
    "The worn tire isn't covered, but the resulting collision damage to the car is covered with the $500 collision deductible, regardless of fault (§6.2, §5.1).",
)
t(
    "Our refrigerator's compressor died and all the food spoiled. Can we claim it?",
    "No. Mechanical breakdown of home appliances is excluded, so neither the compressor nor the spoiled food is covered (§6.2).",
)
t(
    "We found mold behind the wallpaper from years of bathroom humidity. Covered?",
    "No. Mold is covered only when it results from a covered water loss, and long-term humidity is not one (§6.2).",
)
t(
    "We had a covered pipe burst last month and now there's mold. Is mold covered?",
    "Yes. Mold resulting from a covered water loss is covered up to $5,000 per policy term, but mold from long-term humidity or slow leaks is not (§6.2, §4.2).",
    "Does that $5,000 reset if it happens again next month?",
    "No. The $5,000 mold limit is per policy term, so it only resets when the next policy term begins (§6.2).",
)

# ---------------------------------------------------------------- §6.3
t(
    "Insured admitted to setting the garage fire. Coverage?",
    "No. Loss intentionally caused by an insured, including arson, is excluded, and the claim should be referred to SIU (§6.3, §7.2).",
)
t(
    "My estranged husband, who is also on the policy, set fire to my belongings. Am I covered?",
    "Possibly. An insured who did not take part in the intentional act and cooperates with the investigation may recover their own share of the property loss (§6.3).",
)
t(
    "Policyholder punched a guest during an argument and the guest is suing. Does liability apply?",
    "No. Intentional injury is excluded, unless the insured used reasonable force in self-defense or to protect others (§6.3, §4.8).",
)
t(
    "An intruder attacked me and I pushed him away; he broke his arm and is now suing. Am I covered?",
    "Yes. Reasonable force used in self-defense is not treated as intentional injury, so personal liability can apply (§6.3, §4.8).",
)
t(
    "A stranger spray-painted graffiti all over our house. Is that excluded as intentional damage?",
    "No. Intentional damage by someone who isn't an insured is covered as vandalism, subject to the $500 deductible. Report it to the police within 48 hours (§6.3, §2.1).",
)
t(
    "Policyholder's car was damaged while he was fleeing police. Coverage?",
    "No. AutoGuard provides no coverage of any kind while the vehicle is used to flee from police or in a street race (§6.3).",
)
t(
    "Our teenage son smashed the TV in a fit of anger. Can we claim it?",
    "No. Damage intentionally caused by any insured, including a resident family member like your son, is excluded, so the TV cannot be claimed (§6.3, §1.1).",
)

# ---------------------------------------------------------------- §6.4
t(
    "I drive for a food-delivery app and was hit while logged in waiting for orders. Covered?",
    "No. AutoGuard provides no coverage while the vehicle is used for delivery driving while logged in to a platform app (§6.4).",
)
t(
    "I was in an accident on my commute to the office. Is that business use?",
    "No. Commuting is not business use, so your normal collision coverage applies with the $500 deductible, and Harbor may recover from an at-fault driver (§6.4, §5.1, §7.3).",
)
t(
    "Coworkers chip in for gas when I drive our carpool. Does that count as driving for a fee?",
    "No. Sharing fuel costs in a carpool is not business use, so your AutoGuard coverage applies normally while you drive your coworkers (§6.4).",
)
t(
    "My home-office laptop and printer, used only for my business, were stolen. They're worth $4,000. What's covered?",
    "Business property at home is limited to $2,500, so if that's the only loss Harbor pays $2,000 after the $500 deductible (§6.4, §4.4).",
)
t(
    "A client slipped on my porch while visiting my home-based accounting business. Does my liability cover it?",
    "No. HomeGuard has no liability coverage for business activities, including injuries to clients visiting a home business; a separate business policy would be needed (§6.4).",
)
t(
    "I rent my house on a short-term rental site about 60 nights a year. A guest stole my TV. Covered?",
    "Not unless you have the Home-Sharing endorsement. When the home is rented more than 30 nights a year, theft by renters or guests is excluded (§6.4).",
)
t(
    "A short-term rental guest accidentally started a kitchen fire. We rent about 90 nights a year. Covered?",
    "Yes. Fire remains a covered peril; the rental exclusion only removes theft and vandalism by guests and liability to them. The $500 deductible applies (§6.4, §3.1).",
)
t(
    "A thief broke into my car and took my personal backpack ($700) and a case of product samples I sell ($1,200). What's covered?",
    "$700. The samples are business property away from the premises, capped at $500, so the covered total is $1,200 minus the $500 deductible (§6.4, §4.4, §4.6).",
)
t(
    "I'm thinking of driving for a ride-share app on weekends. Does my AutoGuard policy cover that?",
    "Not while you're working. AutoGuard provides no coverage while the vehicle carries people or goods for a fee, including while logged in to a ride-share or delivery app (§6.4).",
    "What about when the app is off and I'm just running errands?",
    "Then it's ordinary personal use, and your normal AutoGuard coverage applies; the exclusion only applies while you're logged in to the app (§6.4).",
)

# ---------------------------------------------------------------- §6.5
t(
    "An earthquake cracked our foundation and walls. Covered?",
    "No. Earthquake and other earth movement are excluded under HomeGuard, although any fire, explosion, theft or glass breakage that results is covered (§6.5).",
)
t(
    "The earthquake broke a gas line and the house caught fire. Is the fire covered?",
    "Yes. Fire resulting from earth movement is covered, subject to the $500 deductible, even though the earthquake damage itself is not (§6.5, §3.1).",
)
t(
    "A sinkhole opened under our driveway. Covered?",
    "No. Sinkholes are a form of earth movement, which is excluded under HomeGuard, and the land itself is not covered either (§6.5, §4.1).",
)
t(
    "An earthquake knocked shelving onto my car in the garage. Covered?",
    "Yes for the car: AutoGuard comprehensive covers earthquake damage to vehicles with a $250 deductible. Earthquake damage to the house itself is excluded (§6.5, §5.1).",
)
t(
    "Looters stole our electronics from the house after the earthquake. Covered?",
    "Yes. Theft resulting from earth movement is covered, subject to the special limits and the $500 deductible; report it to the police within 48 hours (§6.5, §4.6).",
)

# ---------------------------------------------------------------- §6.6
t(
    "Our house sat empty for 4 months after we moved out, and vandals broke in. Covered?",
    "No. Vandalism is excluded when the home has been vacant for more than 60 consecutive days, and 4 months is well past that (§6.6).",
)
t(
    "We're going on a 3-month trip and leaving the house fully furnished. Does it count as vacant?",
    "No. A furnished home whose occupants are traveling is unoccupied, not vacant, but keep the heat on or drain the plumbing to avoid the freezing exclusion (§6.6, §4.2).",
)
t(
    "We emptied my late mother's house 50 days ago and vandals just spray-painted it. Covered?",
    "Yes. The vacancy exclusion only applies after more than 60 consecutive days, so the vandalism is covered less the $500 deductible (§6.6, §3.1).",
)
t(
    "House has been under active renovation for 3 months with contractors working daily, but nobody lives there. Vacant?",
    "No. A home under active renovation with contractors working there is not considered vacant, so the vacancy exclusions don't apply (§6.6).",
)
t(
    "House vacant for 90 days; a windstorm tore off part of the roof. Covered?",
    "Yes. Windstorm remains covered during vacancy, with the windstorm deductible; only vandalism, glass breakage, theft and water damage are excluded (§6.6, §3.1).",
)
t(
    "Our old house has been empty since we moved out in March. Is it still fully covered?",
    "Once it has been vacant more than 60 consecutive days, vandalism, glass breakage, theft and water damage are excluded; fire, lightning and windstorm stay covered (§6.6).",
    "It's been 70 days and someone broke in and stripped the copper pipes.",
    "That theft isn't covered, because the home has been vacant for more than 60 consecutive days; water damage from the missing pipes would be excluded too (§6.6, §4.6).",
)

# ---------------------------------------------------------------- §7.1
t(
    "The denial letter is dated March 3. What's my appeal deadline?",
    "May 2, which is 60 days after the date on the decision letter; send the appeal in writing through the app, by email, or by mail (§7.1).",
)
t(
    "Harbor agrees the damage is covered, but we disagree on the amount. What are my options?",
    "Either side can demand appraisal in writing. Each party picks an independent appraiser, the appraisers pick an umpire, and agreement by any two sets the binding amount (§7.1).",
)
t(
    "The appraisal umpire charged $1,800. Who pays?",
    "The umpire's cost is split equally, so you and Harbor each pay $900; each side also pays its own appraiser (§7.1).",
)
t(
    "Can I send new photos and estimates with my appeal?",
    "Yes. New evidence may be included with your written appeal, and it will be considered by the Claims Review Panel (§7.1).",
)
t(
    "My claim was denied and I think the decision is wrong. What can I do?",
    "You can appeal in writing within 60 days of the decision letter's date; a Claims Review Panel not involved in the original decision reviews it (§7.1).",
    "How long will the review take?",
    "The panel issues a written decision within 30 days of receiving your appeal, and you may contact the state insurance department at any time (§7.1).",
)

# ---------------------------------------------------------------- §7.2
t(
    "Policyholder inflated the value of a stolen TV by $1,000. Do we just reduce the payment?",
    "No. Knowingly inflating a claim means the entire claim is denied, not just the inflated part, and Harbor may cancel the policy, recover payments and report it (§7.2).",
)
t(
    "I listed the wrong purchase year for my couch on the claim. Is that fraud?",
    "No. Honest mistakes that you correct promptly are not fraud, so let your adjuster know the correct year (§7.2).",
)
t(
    "How do I report suspected insurance fraud?",
    "Call Harbor's confidential fraud line at 1-800-555-0142. Anyone can report suspected fraud there, whether or not they are a Harbor customer (§7.2).",
)
t(
    "I flagged a claim to SIU. Does that mean it's denied?",
    "No. An SIU referral alone is not a denial, but the decision timeline may be extended with written notice (§7.2, §2.4).",
)
t(
    "Harbor paid a collision claim that we later proved was staged. Can we get the money back?",
    "Yes. Harbor may recover amounts already paid plus investigation costs, cancel or rescind the policy, and report it to the state fraud bureau and law enforcement (§7.2).",
)
t(
    "A body shop offered to add old damage to my claim so I don't pay the deductible. Is that OK?",
    "No. Adding unrelated damage is misrepresentation and can lead to denial of the entire claim and cancellation of your policy. You can report the shop confidentially at 1-800-555-0142 (§7.2).",
)
t(
    "I claimed my stolen bike was worth $2,000, but I think I actually paid $1,600.",
    "Tell your adjuster promptly so the value can be corrected to $1,600. Honest mistakes that are corrected quickly are not fraud (§7.2).",
    "What if I just leave it as is?",
    "Knowingly keeping an inflated value is misrepresentation: the entire claim can be denied, the policy canceled, and any payments recovered (§7.2).",
)

# ---------------------------------------------------------------- §7.3
t(
    "Harbor recovered 60% from the other driver's insurer. My deductible was $500. What do I get back?",
    "$300, which is 60% of your $500 deductible, paid within 30 days of Harbor receiving the recovery (§7.3).",
)
t(
    "The other driver offered me $300 cash to sign a release. Should I?",
    "Not without Harbor's consent. Signing a release after a loss can reduce your claim payment by the amount Harbor could have recovered (§7.3).",
)
t(
    "A contractor's faulty plumbing work caused water damage. Will Harbor go after them?",
    "Harbor pays your covered claim and may recover its payment from a negligent contractor; any recovery also refunds your deductible proportionally (§7.3).",
)
t(
    "Can I go directly to the other driver's insurance company instead of using my own policy?",
    "Yes. You may pursue the responsible party's insurer directly instead of claiming under your own policy (§7.3).",
)
t(
    "Another driver hit me and I paid my $500 collision deductible. Will I ever see that money again?",
    "If Harbor recovers from the at-fault driver, it refunds your deductible in the same proportion as its recovery (§7.3).",
    "Harbor recovered 80%. How much do I get, and when?",
    "$400, which is 80% of $500, paid within 30 days of Harbor receiving the recovery (§7.3).",
)


# ================================================================ VALIDATION
v(
    "My 19-year-old nephew is living with us for the year while he works locally. If his phone is stolen from our house, is it covered?",
    "Yes. A relative who lives in your household is an insured, so his phone is covered personal property, subject to the police report requirement and the $500 deductible (§1.1, §4.6).",
)
v(
    "Our auto installment is now 10 days overdue. If I get into an accident today, am I covered?",
    "Only if the overdue premium is received before the 15-day grace period ends, so pay within the next 5 days; otherwise the policy lapses back to the due date (§1.2).",
)
v(
    "Customer's previous homeowners policy with another insurer ended August 31, and the Harbor policy started September 10. Hail hit on September 18. Covered?",
    "No. Because there was a gap between the old policy and the new one, the 14-day windstorm and hail waiting period applies, and September 18 falls within it (§1.3).",
)
v(
    "Policyholder's claim includes a $950 bicycle and a $2,100 sofa, with no receipts for either. Which items need proof of ownership?",
    "Only the $2,100 sofa, since proof of ownership is required for any single item valued over $1,000; the $950 bicycle just needs to be on the itemized list (§2.2).",
)
v(
    "After a dishwasher leak, the policyholder paid $1,150 for an emergency water extraction and drying service. Did they need prior approval?",
    "No. Reasonable emergency costs up to $2,500 are reimbursed without prior approval, subject to the deductible; the cost of fixing the dishwasher itself is not covered (§2.3, §4.2).",
)
v(
    "All documents for my claim were received on May 5. It's now June 20, and I have no decision and no letter explaining a delay. Is Harbor late?",
    "Yes. The decision was due by June 4, 30 days after all documents were received, and no written extension notice was sent; you may also contact the state insurance department (§2.4, §7.1).",
)
v(
    "Dwelling limit is $520,000 and a windstorm caused $9,000 of siding damage. What does Harbor pay?",
    "Nothing. The windstorm deductible is 2% of $520,000, or $10,400, which is more than the $9,000 loss, so the siding repair is the policyholder's cost (§3.1).",
)
v(
    "Someone sawed the catalytic converter off my car overnight. Replacement is $2,075. What will Harbor pay?",
    "$1,825. Theft is a comprehensive loss with a $250 deductible. Report the theft to the police within 48 hours (§3.2, §5.1).",
)
v(
    "Lightning struck the house ($3,700 of damage) and fried the electronics of the car in the driveway ($1,900). What's the total payment?",
    "$5,100. One event damaged both policies, so only the higher $500 HomeGuard deductible is charged once against the combined $5,600 loss (§3.3, §3.1).",
)
v(
    "Dwelling limit $420,000. A fire destroyed the detached garage and rebuilding costs $51,000. How much does Harbor pay?",
    "$42,000, the other-structures limit of 10% of $420,000. Even after the $500 deductible, the $50,500 loss exceeds that limit (§4.1, §3.1).",
)
v(
    "The upstairs AC condensate line cracked two days ago and water came through the ceiling, ruining the ceiling and a rug. Covered? What about the line?",
    "The ceiling and rug damage is covered as a sudden and accidental discharge from the air-conditioning system, less the $500 deductible. Repairing the cracked line itself is not covered (§4.2, §3.1).",
)
v(
    "The municipal sewer got blocked and water backed up through the kitchen sink drain; damage is $6,300. The sewer endorsement was added 45 days ago. What's paid?",
    "$5,800. The 30-day waiting period has passed, so the backup is covered up to $10,000 after the $500 deductible; include a contractor estimate since repairs exceed $5,000 (§4.3, §1.3, §2.2).",
)
v(
    "A shotgun and a rifle worth $3,800 together were stolen in a burglary. How much can Harbor pay?",
    "Firearms theft is capped at $2,500 total, so if they're the only loss Harbor pays $2,000 after the $500 deductible (§4.4, §3.1).",
)
v(
    "No contents endorsement. A refrigerator that costs $2,400 new was ruined in a kitchen fire and has 40% depreciation. What's it worth for the claim?",
    "$1,440, its actual cash value ($2,400 minus 40% depreciation), because contents are paid at actual cash value without the endorsement; the $500 deductible applies to the claim as a whole (§4.4, §3.1).",
)
v(
    "After a covered fire, the insured moved into a hotel and then decided to buy a house elsewhere instead of rebuilding. When do temporary housing payments stop?",
    "When the household settles permanently in the new home, if that comes before the end of the repair period, the 12-month cap, or the 20% of Coverage A limit (§4.5).",
)
v(
    "Insured discovered a burglary, was hospitalized that night, and filed the police report on day 4. Will the theft claim be denied for lateness?",
    "Not for that reason. A late police report can be excused when the delay was reasonable, and hospitalization is an example of a reasonable delay (§4.6).",
)
v(
    "A $1,600 e-bike was stolen from the policyholder's locked garage; the lock was cut and the police report was filed the same day. Payment?",
    "$1,100 after the $500 deductible. Proof of ownership is required because the e-bike is valued over $1,000 (§4.6, §3.1, §2.2).",
)
v(
    "Lightning split a tree and half of it fell on the backyard fence. Fence repair is $1,900 and removal is $700. What does Harbor pay?",
    "$2,100. The fence is a covered other structure and removal is under the $1,000 per-tree limit, so $2,600 minus the $500 deductible (§4.7, §4.1, §3.1).",
)
v(
    "While golfing, the policyholder's shot hit another player, who has $2,600 in medical bills. Any coverage?",
    "Yes. Medical payments to others covers injuries caused by an insured's activities away from home, up to $5,000 per person regardless of fault, with no deductible (§4.8).",
)
v(
    "A guest hurt at our barbecue needed follow-up surgery four years after the fall. Will medical payments cover that bill?",
    "No. Medical payments only covers expenses incurred within 3 years of the accident; personal liability could still apply if you are legally liable (§4.8).",
)
v(
    "I rolled my SUV on a gravel road with no other vehicles and no injuries. Damage is $11,400 and it isn't a total loss. What's paid, and do I need a police report?",
    "Harbor pays $10,900 under collision after the $500 deductible. No police report is required, since no one was injured and no other vehicle was involved (§5.1, §2.2).",
)
v(
    "A gust of wind sent a shopping cart into my car door: $680 of damage. What's covered?",
    "$430. A wind-blown shopping cart is a flying object, which is a comprehensive peril, so the $250 comprehensive deductible is subtracted from the $680 damage (§5.1, §3.2).",
)
v(
    "The body shop finished repairs on Tuesday, but I kept the rental car until Saturday. Does Harbor pay for the extra days?",
    "No. Rental reimbursement ends as soon as the repairs are completed, so Harbor stops paying on Tuesday and the extra days until Saturday are your cost (§5.3).",
)
v(
    "My battery died in the airport parking lot. Roadside gave me a jump-start, but the tech says I need a new $190 battery. Is the battery covered?",
    "No. The jump-start is covered, but roadside assistance does not pay for parts such as a new battery (§5.4).",
)
v(
    "Insured wants the car repaired rather than totaled: repair estimate $12,000, ACV $14,000. Can they insist on repairs?",
    "Harbor settles it as a total loss, since $12,000 is about 86% of ACV. The insured may keep the car and repair it, with its salvage value deducted from the settlement (§5.5).",
)
v(
    "It's been 30 days since we reported our SUV stolen to Harbor and it was never found. Its ACV is $24,000, with $1,440 in sales tax and a $60 title fee. What will we receive?",
    "$25,250. It's settled as a total loss: $24,000 + $1,440 + $60, minus the $250 comprehensive deductible, with any lienholder paid first (§5.5, §5.1).",
)
v(
    "Policyholder's father moved in 3 weeks ago and hasn't been added to the policy yet. He backed the car into a post. Covered?",
    "Yes. A new household member is covered for 30 days after moving in, so collision applies with the $500 deductible; he should be listed before the 30 days end (§5.6, §5.1).",
)
v(
    "Melting snow ran down the hillside and into our walk-out basement. Covered?",
    "No. Surface water is excluded under HomeGuard no matter where it comes from, so runoff from melting snow would need a separate flood policy (§6.1).",
)
v(
    "Woodpeckers drilled holes all over our cedar siding. Covered?",
    "No. Damage by birds and other animals is excluded under HomeGuard, as is the deterioration that follows, so the siding repair is not covered (§6.2).",
)
v(
    "Insured kicked in his own car door in frustration and caused $1,400 of damage. Covered?",
    "No. Damage intentionally caused by an insured is excluded, so the $1,400 door repair isn't covered under collision or comprehensive (§6.3).",
)
v(
    "Policyholder was paid $150 to move a neighbor's furniture in his pickup and crashed on the way. Covered?",
    "No. AutoGuard provides no coverage while the vehicle carries goods for a fee, and being paid $150 for the move makes this business use (§6.4).",
)
v(
    "We rent our basement apartment to a long-term tenant. Her space heater started a fire in the basement. Does HomeGuard cover it?",
    "Yes, the fire damage to your home is covered, because renting only excludes theft and vandalism by tenants and liability to them. The tenant's own belongings are not covered (§6.4, §1.1).",
)
v(
    "Policyholder's former home has been listed for sale and empty for 65 days. The furnace failed and the pipes burst. Covered?",
    "No. Water damage, including frozen pipes, is excluded once the home has been vacant for more than 60 consecutive days (§6.6).",
)
v(
    "The decision letter was dated July 20 and the insured mailed an appeal on September 25. Is the appeal on time?",
    "No. The 60-day appeal window from July 20 closed on September 18, though the insured may still contact the state insurance department (§7.1).",
)
v(
    "Claimant backdated a police report so it would look like it was filed within 48 hours. What happens?",
    "Submitting a false document is fraud: the entire claim is denied, Harbor may cancel the policy and recover payments, and it may report the matter to the fraud bureau (§7.2).",
)
v(
    "A neighbor's contractor crashed a crane into the insured's garage. Harbor paid and recovered 35% from the contractor. The deductible was $500. What's refunded?",
    "$175, which is 35% of the $500 deductible, within 30 days of Harbor receiving the recovery (§7.3).",
)
v(
    "Someone broke into my car overnight and took my sunglasses and a jacket. Which policy covers it?",
    "Personal belongings in a car are covered under HomeGuard, not AutoGuard, and theft from an unattended vehicle requires visible signs of forced entry (§4.6, §5.1).",
    "The lock was punched out. What deadlines do I face?",
    "Report the theft to the police within 48 hours of discovery, and report the claim to Harbor within 30 days with the police report number (§2.1, §4.6).",
)
v(
    "My leased car was totaled. Does Harbor pay the leasing company or me?",
    "The lienholder or leasing company is paid first, up to the payoff amount, and any remainder of the settlement goes to you (§5.5).",
    "ACV was $28,000 and Harbor's payment is $27,000, but the lease payoff is $31,500 including $400 in late fees. I have gap. What does it cover?",
    "$4,100. Gap pays the remaining balance except late fees, and $4,100 is under its cap of $7,000 (25% of ACV); you still owe the $400 in late fees (§5.5).",
)
v(
    "A covered kitchen fire left our house without power or water, and the adjuster agrees it's uninhabitable. Can we get money now?",
    "Yes. You can request an advance of up to $1,500 for temporary housing right away; keep receipts for the rest of your increased living costs (§4.5, §2.4).",
    "Our dwelling limit is $150,000 and the hotel costs $4,000 a month, with no other extra costs. How long will coverage last?",
    "About 7.5 months. The limit is $30,000 (20% of $150,000), which $4,000 a month uses up before the 12-month cap (§4.5).",
)
v(
    "An earthquake shattered our living room windows. Is any of that covered?",
    "Yes. Glass breakage resulting from earth movement is covered, subject to the $500 deductible, even though other earthquake damage to the house is excluded (§6.5, §3.1).",
    "The window repair is $1,350. What do we receive?",
    "$850, which is the $1,350 window repair minus the $500 all-perils deductible; glass breakage after an earthquake is covered (§6.5, §3.1).",
)


# ================================================================ WRITER
def to_row(qa):
    assert len(qa) % 2 == 0, qa
    msgs = [{"role": "system", "content": SYSTEM}]
    for i in range(0, len(qa), 2):
        msgs.append({"role": "user", "content": qa[i]})
        msgs.append({"role": "assistant", "content": qa[i + 1]})
    return {"messages": msgs}


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for qa in rows:
            f.write(json.dumps(to_row(qa), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    assert len(TRAIN) == 260, len(TRAIN)
    assert len(VAL) == 40, len(VAL)
    here = os.path.dirname(os.path.abspath(__file__))
    write(os.path.join(here, "claims_train.jsonl"), TRAIN)
    write(os.path.join(here, "claims_validation.jsonl"), VAL)
    print("wrote", len(TRAIN), "train and", len(VAL), "validation rows")
